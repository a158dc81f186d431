"""Analysis instruments for code sets: the entropy-cliff analyzer, the first-k-tokens linear probe and the
memorisation measures (prior NLL gap, copies among generated codes, nearest training images)."""

from .entropy import (
    DEFAULT_CLIFF_THRESHOLD,
    EntropyProfile,
    analyze_entropy,
    per_position_entropy,
    plot_entropy_profile,
)
from .memorization import (
    CopyStatistics,
    GeneralizationGap,
    NearestTrainingDistances,
    PriorNLL,
    code_log_likelihood_bits,
    copy_statistics,
    generalization_gap,
    nearest_neighbors,
    nearest_training_distances,
    plot_generalization_gap,
    prior_nll,
)
from .probe import ProbeResult, default_ks, embedding_features, linear_probe, onehot_features, plot_probe
