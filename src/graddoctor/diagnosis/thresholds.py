"""Named thresholds of the detectors, each with where its number comes from."""

# Back-propagated signal over depth. Glorot & Bengio (2010, fig. 7) show the gradient at
# the input layer of a 5-layer sigmoid network orders of magnitude below the top layer's;
# He et al. (2015) show a 30-layer ReLU net with Xavier init losing a factor 2 of
# variance per layer (2^-15 ~ 3e-5 in norm). Three decades between the first and the
# last weight layer is far outside what a trainable plain network shows (He init: ~1).
VANISHING_DEPTH_RATIO = 1e-3
EXPLODING_DEPTH_RATIO = 1e3
# Six decades: the lower layers get effectively nothing (seed 003: w^{n-i} -> 0).
CRITICAL_DEPTH_DECADES = 6.0
# Fewer weight layers than this and a depth profile says nothing about depth.
MIN_LAYERS_FOR_DEPTH = 3

# Forward signal over depth: the same three decades of activation scale (seed 003's
# deep linear network, w^n x -> 0 or -> inf; He et al. 2015, eq. 9).
VANISHING_ACTIVATION_RATIO = 1e-3
EXPLODING_ACTIVATION_RATIO = 1e3

# Gradient norm over steps: growth by four decades inside one short run (seed 004's
# regression goes 2e2 -> 3e9 in 8 steps), or one step 100x above the running median of
# the previous ones (the spikes of Pascanu et al. 2013, fig. 6, "cliffs").
EXPLODING_STEP_GROWTH = 1e4
SPIKE_FACTOR = 100.0
SPIKE_MIN_HISTORY = 5
SPIKE_MEDIAN_WINDOW = 50  # the running median is over the last 50 recorded steps

# Over time in a recurrent layer: the gradient reaching the first time step's input
# against the last one's (seed 001, eq. 12: (gamma_W gamma_h)^(t-k)). Three decades.
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

# Seed 003: "train with 0 learning rate and compare". Training that gains less than 1%
# of the loss over the zero-learning-rate control did not train.
ZERO_LR_MIN_GAIN = 0.01

# A first loss this many times the targets' variance (or this large in absolute terms)
# points at unscaled regression targets (seed 004: loss ~1.7e4 with targets std ~180).
HUGE_LOSS = 1e3
