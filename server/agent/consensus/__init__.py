"""Agreement across samples (``samples: k``): k runs of one task side by side, one answer.

A small model's single greedy run is one draw; k runs, the first greedy and the rest
sampled, that agree on an answer are more often right than any one of them
(self-consistency). ``vote`` is the pure decision (which answers agree, which wins);
``runner`` starts the k runs, each in its own session, drives them at once so the engine
batches their generations, and decides; a plain run is its ``samples: 1``, without a vote.
"""
