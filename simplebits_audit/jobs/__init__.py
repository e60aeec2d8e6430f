"""Jobs: where images come from and where records go; every batch goes through the one pipeline.

* :func:`explain_images` -- a few image files (or a tensor) -> ``results.json``, PNGs, ``report.html``;
* :func:`run_audit` -- a dataset (ImageFolder, CSV, testbed), streamed, resumable, sharded over
  torchrun processes -> ``results.jsonl``, ``summary.json``, ``report.html``;
* :func:`compare` / :func:`compare_files` -- every explainer on one batch, one metric table;
* :func:`train_simplifier_job` -- a learned simplifier for a model on a dataset, a held-out share scored;
* :func:`run_condense` -- a training set condensed to a few simplified synthetic images per class, evaluated;
* :func:`train_job` -- classifiers trained on simplified inputs, one per lambda: the bits-accuracy curve;
* :func:`run_demo` -- the explain job on the shipped testbed;
* :func:`measure_bits` -- bits of image files under an estimator beside PNG, WebP and JPEG-XL.

The jobs take their options in groups declared once in ``options`` (:class:`ModelOptions`,
:class:`ExplainOptions`, :class:`RunOptions`, :class:`ScoringOptions`, :class:`TrainOptions`,
:class:`CondenseOptions`), or their fields as keywords.
``pipeline`` (:func:`explain_batch`, :func:`write_batch`) is the one path from a batch to maps and
records; ``preflight`` the one set of checks before any work, and the shared plumbing (output
checks, the job's device, resuming); ``distributed`` the torchrun ranks; ``sources`` what an audit
reads; ``answers`` what a model answered under its output head (softmax, or sigmoid per label).
"""

from .audit import Selection, run_audit
from .bits import ImageBits, measure_bits
from .checks import Preflight, preflight
from .comparison import DEFAULT_METHODS, Comparison, all_methods, compare, compare_files
from .condense import run_condense
from .demo import run_demo
from .explain import ExplainOutput, explain_images
from .options import CondenseOptions, ExplainOptions, ModelOptions, RunOptions, ScoringOptions, TrainOptions
from .pipeline import BatchExplanation, explain_batch, write_batch
from .simplifier import train_simplifier_job
from .sources import AuditItem, AuditSource, open_source
from .train import train_job

__all__ = [
    "DEFAULT_METHODS",
    "AuditItem",
    "AuditSource",
    "BatchExplanation",
    "Comparison",
    "CondenseOptions",
    "ExplainOptions",
    "ExplainOutput",
    "ImageBits",
    "ModelOptions",
    "Preflight",
    "RunOptions",
    "ScoringOptions",
    "Selection",
    "TrainOptions",
    "all_methods",
    "compare",
    "compare_files",
    "explain_batch",
    "explain_images",
    "measure_bits",
    "open_source",
    "preflight",
    "run_audit",
    "run_condense",
    "run_demo",
    "train_job",
    "train_simplifier_job",
    "write_batch",
]
