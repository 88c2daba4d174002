# Copyright 2025 The nlprompt-hf authors.
# Licensed under the Apache License, Version 2.0.
"""Top-1 accuracy and per-class accuracy as a Hugging Face `evaluate` metric, shipped inside nlprompt-hf.

`evaluate.load("accuracy")` downloads its script from the Hub and fails offline; load this one by path:
`evaluate.load(nlprompt_hf.metrics.ACCURACY_METRIC_PATH)` or `nlprompt_hf.metrics.load_accuracy_metric()`.
"""

import datasets
import evaluate

from nlprompt_hf.metrics import accuracy, per_class_accuracy

_DESCRIPTION = """
Top-1 accuracy (fraction of predictions equal to the reference label) and the accuracy of each true class
(NaN for classes without reference samples). Used to evaluate prompts learned with NLPrompt
(https://arxiv.org/abs/2412.01256).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): predicted class ids.
    references (`list` of `int`): true class ids.
    num_classes (`int`, *optional*): number of classes for `per_class_accuracy`; defaults to max label + 1.
Returns:
    accuracy (`float`): top-1 accuracy in [0, 1].
    per_class_accuracy (`list` of `float`): accuracy of each true class (NaN when the class has no sample).
Examples:
    >>> metric = evaluate.load("path/to/top1_accuracy")
    >>> metric.compute(predictions=[0, 1, 1], references=[0, 1, 0])
    {'accuracy': 0.6666666666666666, 'per_class_accuracy': [0.5, 1.0]}
"""

_CITATION = """
@inproceedings{pan2025nlprompt,
  title={NLPrompt: Noise-Label Prompt Learning for Vision-Language Models},
  author={Pan, Bikang and Li, Qun and Tang, Xiaoying and Huang, Wei and Fang, Zhen and Liu, Feng and Wang, Jingya and Yu, Jingyi and Shi, Ye},
  booktitle={CVPR},
  year={2025}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Top1Accuracy(evaluate.Metric):
    """Top-1 accuracy + per-class accuracy (nlprompt-hf)."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
            reference_urls=["https://arxiv.org/abs/2412.01256"],
        )

    def _compute(self, predictions, references, num_classes=None):
        return {
            "accuracy": accuracy(predictions, references),
            "per_class_accuracy": [
                float(v) for v in per_class_accuracy(predictions, references, num_classes)
            ],
        }
