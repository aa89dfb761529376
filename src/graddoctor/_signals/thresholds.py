"""Thresholds of the step-axis detectors, each with where its number comes from.

Read by the offline diagnosis (re-exported by ``graddoctor.diagnosis.thresholds``) and by
the Monitor's live findings: one set of numbers for both.
"""

# Gradient norm over steps: growth by four decades inside one short run (an MLP regressing
# unscaled targets goes 2e2 -> 3e9 in 8 steps), or one step 100x above the running median of
# the previous ones (the spikes of Pascanu et al. 2013, fig. 6, "cliffs").
EXPLODING_STEP_GROWTH = 1e4
SPIKE_FACTOR = 100.0
SPIKE_MIN_HISTORY = 5
SPIKE_MEDIAN_WINDOW = 50  # the running median is over the last 50 recorded steps

# GradScaler's loss scale (Micikevicius et al. 2018). Ten net halvings: 2^16 -> 2^6. A
# healthy fp16 run settles a few halvings below its start and stays there (the scale only
# grows back every 2000 clean steps). More than half of the last 20 steps skipped: more
# skipped than trained. A scale below 1 divides the gradients: even unscaled they
# overflow (or are NaN).
COLLAPSE_HALVINGS = 10.0
SKIPPED_WINDOW = 20
SKIPPED_FRACTION = 0.5
CRITICAL_SCALE = 1.0

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
