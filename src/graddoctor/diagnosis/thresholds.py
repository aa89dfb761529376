"""Named thresholds of the detectors, each with where its number comes from."""

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

# Gradient norm over steps: growth by four decades inside one short run (an MLP regressing
# unscaled targets goes 2e2 -> 3e9 in 8 steps), or one step 100x above the running median of
# the previous ones (the spikes of Pascanu et al. 2013, fig. 6, "cliffs").
EXPLODING_STEP_GROWTH = 1e4
SPIKE_FACTOR = 100.0
SPIKE_MIN_HISTORY = 5
SPIKE_MEDIAN_WINDOW = 50  # the running median is over the last 50 recorded steps

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

# GradScaler's loss scale (Micikevicius et al. 2018). Ten net halvings: 2^16 -> 2^6. A
# healthy fp16 run settles a few halvings below its start and stays there (the scale only
# grows back every 2000 clean steps). More than half of the last 20 steps skipped: more
# skipped than trained. A scale below 1 divides the gradients: even unscaled they
# overflow (or are NaN).
COLLAPSE_HALVINGS = 10.0
SKIPPED_WINDOW = 20
SKIPPED_FRACTION = 0.5
CRITICAL_SCALE = 1.0

# The zero-learning-rate control ("train with 0 learning rate and compare", lecture notes
# "Vanishing and Exploding Gradients - A Simple Example"). Training that gains less than 1%
# of the loss over the zero-learning-rate control did not train.
ZERO_LR_MIN_GAIN = 0.01

# A first loss this many times the targets' variance (or this large in absolute terms)
# points at unscaled regression targets (an MSE of ~1.7e4 for targets of std ~180; LeCun et al.
# 1998, "Efficient BackProp": standardise the targets).
HUGE_LOSS = 1e3

# Diverging loss. Gradient descent overshoots once the learning rate passes 2/L for a
# curvature L (LeCun et al. 1998): the loss then rises. Over a window of 10 consecutive
# recorded losses, 8 (the 20th percentile) above 1.25x the first loss, or above 1.5x the
# lowest 5-step median reached before the window after giving back half of the progress
# made; the window's median must also clear the loss's own step-to-step noise (the median
# |L_t - L_{t-1}| of the run) three times over, so batches of different difficulty are not
# a divergence. A transient spike that comes back down (the "catapult" of the first
# steps, Lewkowycz et al. 2020) holds for fewer than 8 of 10 steps.
LOSS_WINDOW = 10
LOSS_WINDOW_QUANTILE = 0.2
DIVERGING_LOSS_FACTOR = 1.25
DIVERGING_FROM_MIN_FACTOR = 1.5
GIVEN_BACK_FRACTION = 0.5
LOSS_NOISE_MARGIN = 3.0
LOSS_MEDIAN_WINDOW = 5
# ten times the reference: the run is lost
CRITICAL_LOSS_FACTOR = 10.0
# Update size: ||delta theta|| / ||theta|| near 1e-3 per step in a healthy run (Karpathy,
# CS231n notes, "ratio of the update magnitudes to the value magnitudes"). A 5-step median
# above 0.1, a hundred times that, for 20 consecutive steps: the weights are rewritten
# faster than anything can be learnt. Adam at 3e-2 on a small net passes 0.1 for up to 9
# steps and trains; so the ratio alone needs 20.
USUAL_UPDATE_RATIO = 1e-3
DIVERGING_UPDATE_RATIO = 0.1
DIVERGING_UPDATE_STEPS = 20

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
