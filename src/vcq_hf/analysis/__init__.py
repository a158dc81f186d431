"""Analysis instruments for code sets: the entropy-cliff analyzer and the first-k-tokens linear probe."""

from .entropy import (
    DEFAULT_CLIFF_THRESHOLD,
    EntropyProfile,
    analyze_entropy,
    per_position_entropy,
    plot_entropy_profile,
)
from .probe import ProbeResult, default_ks, embedding_features, linear_probe, onehot_features, plot_probe
