"""Per-CPU counting from Python, on rseq registration code made by rseq-gen.

>>> import rseq_counter
>>> c = rseq_counter.Counter()
>>> c.add(1000)            # returns the CPU of the last increment
>>> c.total()
1000
"""

from rseq_counter._counter import Counter, current_cpu, owner, protocol

__all__ = ["Counter", "current_cpu", "owner", "protocol"]
