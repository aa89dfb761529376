"""Named thresholds of the detectors, each with where its number comes from.

The thresholds of the step-axis detectors (gradient growth and spikes, a diverging loss,
GradScaler's scale) are defined in :mod:`graddoctor._signals.thresholds`, where the
Monitor's live findings read them too, and re-exported here.
"""

from .._signals.thresholds import (  # noqa: F401  (the step-axis thresholds, re-exported)
    COLLAPSE_HALVINGS,
    CRITICAL_LOSS_FACTOR,
    CRITICAL_SCALE,
    DIVERGING_FROM_MIN_FACTOR,
    DIVERGING_LOSS_FACTOR,
    DIVERGING_UPDATE_RATIO,
    DIVERGING_UPDATE_STEPS,
    EXPLODING_STEP_GROWTH,
    GIVEN_BACK_FRACTION,
    LOSS_MEDIAN_WINDOW,
    LOSS_NOISE_MARGIN,
    LOSS_WINDOW,
    LOSS_WINDOW_QUANTILE,
    SKIPPED_FRACTION,
    SKIPPED_WINDOW,
    SPIKE_FACTOR,
    SPIKE_MEDIAN_WINDOW,
    SPIKE_MIN_HISTORY,
    USUAL_UPDATE_RATIO,
)

# Back-propagated signal over depth. Glorot & Bengio (2010, fig. 7) show the gradient at
# the input layer of a 5-layer sigmoid network orders of magnitude below the top layer's;
# He et al. (2015) show a 30-layer ReLU net with Xavier init losing a factor 2 of
# variance per layer (2^-15 ~ 3e-5 in norm). Three decades between the first and the
# last weight layer is far outside what a trainable plain network shows (He init: ~1).
VANISHING_DEPTH_RATIO = 1e-3
EXPLODING_DEPTH_RATIO = 1e3
# Six decades: the lower layers get effectively nothing (a deep linear chain's gradient
# scales like w^{n-i} -> 0).
CRITICAL_DEPTH_DECADES = 6.0
# Fewer weight layers than this and a depth profile says nothing about depth.
MIN_LAYERS_FOR_DEPTH = 3

# Forward signal over depth: the same three decades of activation scale (a deep linear
# network's a_n = w^n x -> 0 or -> inf; He et al. 2015, eq. 9).
VANISHING_ACTIVATION_RATIO = 1e-3
EXPLODING_ACTIVATION_RATIO = 1e3

# Over time in a recurrent layer: the gradient reaching the first time step's input
# against the last one's (Pascanu et al. 2013, eq. 7: (gamma_W gamma_h)^(t-k)). Three decades.
VANISHING_TIME_RATIO = 1e-3
EXPLODING_TIME_RATIO = 1e3
MIN_TIME_STEPS = 4

# Saturation: half of a bounded activation's outputs within 1% of its bounds. Glorot &
# Bengio (2010, fig. 2) show the top sigmoid layer pinned at 0 for nearly all units; a
# healthy tanh/sigmoid layer keeps well under 10% there.
SATURATED_FRACTION = 0.5
CRITICAL_SATURATED_FRACTION = 0.9

# Dead units: half of a ReLU layer never firing for a whole batch, at most recorded steps.
# For an independent live unit with p = 1/2 per sample, silence over 32 samples has
# chance 2^-32; but deep narrow He-initialised nets are born with a third of their deep
# units silent (Lu et al. 2019, "Dying ReLU and Initialization"), and still train.
DEAD_FRACTION = 0.5
CRITICAL_DEAD_FRACTION = 0.9

# The zero-learning-rate control ("train with 0 learning rate and compare", lecture notes
# "Vanishing and Exploding Gradients - A Simple Example"). Training that gains less than 1%
# of the loss over the zero-learning-rate control did not train.
ZERO_LR_MIN_GAIN = 0.01

# A first loss this many times the targets' variance (or this large in absolute terms)
# points at unscaled regression targets (an MSE of ~1.7e4 for targets of std ~180; LeCun et al.
# 1998, "Efficient BackProp": standardise the targets).
HUGE_LOSS = 1e3

# Gradient clipping (Pascanu et al. 2013) set near the average gradient norm rescales the
# rare cliffs. Fired on more than half of the steps, it rescales every step; with the norm
# before clipping ten times the threshold (median over the steps it fired), the gradients
# explode and the clip hides it. A norm recorded after clipping equals the threshold when
# the clip fired: the same value, to 1e-3, on most of at least 10 steps.
CLIP_FIRED_FRACTION = 0.5
CLIP_HIDING_FACTOR = 10.0
PINNED_NORM_TOLERANCE = 1e-3
PINNED_MIN_STEPS = 10

# A verdict needs evidence: at least 5 steps with recorded gradients (the spike test's
# history, SPIKE_MIN_HISTORY), and a recorded loss.
MIN_STEPS_FOR_VERDICT = 5
