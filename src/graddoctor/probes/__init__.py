"""What is measured, by family; nothing here writes a run or imports the Monitor.

* ``statistics``: the declaration of every recorded statistic and the named ``StatBlock``.
* ``parameters``: gradient, weight and update statistics per parameter.
* ``activations``: per-module output statistics and back-propagated norms (forward hooks).
* ``structure``: the model summary stored with a run (types, families, shapes).
* ``nonfinite_replay``: replay a failing batch to find where NaN/Inf is born.
* ``clipping``: the names of the scalars a clipped step records (threshold, fired, norm before).
"""
