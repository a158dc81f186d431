"""`evaluate` metric module: FID, KID, precision/recall and (optionally) Inception Score from feature sets.

Load it offline from its folder (`evaluate.load(vcq_hf.metrics.EVALUATE_METRIC_PATH)`), add features of real and
generated images in any number of batches and compute:

    >>> import evaluate
    >>> from vcq_hf.metrics import EVALUATE_METRIC_PATH, load_feature_extractor
    >>> extractor = load_feature_extractor("fmnist-cnn")
    >>> metric = evaluate.load(EVALUATE_METRIC_PATH)
    >>> metric.add_batch(features=extractor.extract(real_images)[0], is_real=[True] * len(real_images))
    >>> metric.add_batch(features=extractor.extract(fake_images)[0], is_real=[False] * len(fake_images))
    >>> metric.compute(extractor_name=extractor.name)  # {"FID-FMNIST-CNN": ..., "KID-FMNIST-CNN": ..., ...}

With the `"with_logits"` configuration (`evaluate.load(path, "with_logits")`) every row also carries the
extractor's logits, and the Inception Score of the generated rows is added. The arithmetic is that of
`vcq_hf.metrics.compute_generation_metrics` (float64, seeded KID subsets, k-NN precision/recall).
"""

import datasets
import evaluate
import numpy as np

from vcq_hf.metrics import compute_generation_metrics


_DESCRIPTION = __doc__
_CITATION = """\
@inproceedings{heusel2017gans, title={GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash
  Equilibrium}, author={Heusel, Martin and others}, booktitle={NeurIPS}, year={2017}}
@inproceedings{binkowski2018demystifying, title={Demystifying MMD GANs}, author={Bi{\\'n}kowski, Miko{\\l}aj and
  others}, booktitle={ICLR}, year={2018}}
@inproceedings{kynkaanniemi2019improved, title={Improved Precision and Recall Metric for Assessing Generative Models},
  author={Kynk{\\"a}{\\"a}nniemi, Tuomas and others}, booktitle={NeurIPS}, year={2019}}
"""
_KWARGS_DESCRIPTION = """
Args:
    features (`list[list[float]]`): one feature vector per image (all of one length D).
    is_real (`list[bool]`): True for reference images, False for generated ones.
    logits (`list[list[float]]`, only with the "with_logits" configuration): classifier logits per image.
    extractor_name (`str`, *optional*): label added to the metric names, e.g. "FMNIST-CNN" -> "FID-FMNIST-CNN".
    kid_subsets (`int`, *optional*, defaults to 100), kid_subset_size (`int`, *optional*, defaults to 1000),
    pr_k (`int`, *optional*, defaults to 3), is_splits (`int`, *optional*, defaults to 10),
    kid_seed (`int`, *optional*, defaults to 0).
Returns:
    `dict[str, float]`: FID, KID (+ std), precision, recall, IS (+ std) with "with_logits", num_real, num_fake.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class VcqGeneration(evaluate.Metric):
    def _info(self):
        if self.config_name not in ("default", "with_logits"):
            raise ValueError(f"Unknown configuration {self.config_name!r}; expected 'default' or 'with_logits'.")
        columns = {"features": datasets.Sequence(datasets.Value("float64")), "is_real": datasets.Value("bool")}
        if self.config_name == "with_logits":
            columns["logits"] = datasets.Sequence(datasets.Value("float64"))
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(columns),
            reference_urls=["https://arxiv.org/abs/1706.08500", "https://arxiv.org/abs/1904.06991"],
        )

    def _compute(
        self,
        features,
        is_real,
        logits=None,
        extractor_name=None,
        kid_subsets=100,
        kid_subset_size=1000,
        pr_k=3,
        is_splits=10,
        kid_seed=0,
    ):
        is_real = np.asarray(is_real, dtype=bool)
        try:
            features = np.asarray(features, dtype=np.float64)
        except ValueError as err:
            raise ValueError("All feature vectors must have the same length.") from err
        if features.ndim != 2 or features.shape[0] != is_real.shape[0]:
            raise ValueError(f"Expected one feature vector per row, got features of shape {features.shape}.")
        fake_logits = None
        if logits is not None:
            fake_logits = np.asarray([row for row, real in zip(logits, is_real) if not real], dtype=np.float64)
        return compute_generation_metrics(
            features[is_real],
            features[~is_real],
            fake_logits=fake_logits,
            extractor_name=extractor_name,
            kid_subsets=kid_subsets,
            kid_subset_size=kid_subset_size,
            pr_k=pr_k,
            is_splits=is_splits,
            seed=kid_seed,
        )
