"""The registered remedies, declared family by family without torch (one module a family).

Each module's ``REMEDIES`` holds its family's :class:`~graddoctor.remedies.Remedy` entries:
id, description, defaults, what they treat, settings in other frameworks. Their transform
and check are :class:`~graddoctor.remedies._deferred.Deferred`: the code acting on a model
(beside the family's other code, e.g. ``clip/_apply.py``) is imported when a remedy is
first applied. :mod:`graddoctor.remedies.registry` joins the families in order.
"""

from graddoctor.remedies._deferred import Deferred

# why a gradient-based remedy cannot act on a problem (no trainable weights, closed form)
TRAINABLE = Deferred("graddoctor.remedies._common", "trainable_reason")

__all__ = ["TRAINABLE"]
