"""Every explainer behind one registry and one call: SimpleBits, the Captum baselines, trivial reference maps.

>>> from simplebits_audit import explainers
>>> e = explainers.explain("ig", model, inputs, target=labels)   # an Explanation
>>> e.attributions, e.map, e.seconds                              # (B, C, H, W), (B, 1, H, W), float
>>> e = explainers.explain("simplebits", model, inputs, steps=30, context=explainers.Context(seed=1))
>>> e.result.simplified                                           # explainers that simplify return their result too
>>> attr = explainers.attribute("occlusion", model, inputs)       # the attributions only: (B, C, H, W)
>>> amap = explainers.to_map(attr)                                # (B, 1, H, W), sum of |attr| over channels
>>> explainers.list_explainers(simplifies=False)                  # the Captum baselines, then the reference maps

``inputs`` are in the model's space (Captum convention) and ``forward_func`` returns logits (B, K).
``target`` is Captum-style: ``None`` (the predicted class), an int, a list or a 1-D tensor. The
model is never modified: every call runs inside the model guard.

Adding an explainer is one function and one registry entry::

    def my_map(forward_func, inputs, target, additional_forward_args=None, *, sigma: float = 1.0):
        \"\"\"One line for tables.\"\"\"
        return ...  # a tensor shaped like inputs (B, C, H, W)

    EXPLAINERS["my_map"] = spec("my_map", my_map, map_reduce="sum")

A variant is another entry of the same function with other presets, e.g.
``spec("simplebits_ce", simplebits, simplifies=True, map_reduce="first", forwards_to=simplify,
defaults={"objective": "ce"})``.
"""

from .captum import find_last_conv
from .registry import (
    EXPLAINERS,
    MAP_REDUCTIONS,
    SIMPLEBITS,
    SIMPLEBITS_LEARNED,
    Context,
    ExplainerSpec,
    Explanation,
    attribute,
    check_methods,
    check_options,
    explain,
    get_spec,
    list_explainers,
    spec,
    to_map,
)
from .simple_bits import ATTRIBUTIONS, SimpleBits, attribution_map, simplebits, simplebits_learned

__all__ = [
    "ATTRIBUTIONS",
    "EXPLAINERS",
    "MAP_REDUCTIONS",
    "SIMPLEBITS",
    "SIMPLEBITS_LEARNED",
    "Context",
    "ExplainerSpec",
    "Explanation",
    "SimpleBits",
    "attribute",
    "attribution_map",
    "check_methods",
    "check_options",
    "explain",
    "find_last_conv",
    "get_spec",
    "list_explainers",
    "simplebits",
    "simplebits_learned",
    "spec",
    "to_map",
]
