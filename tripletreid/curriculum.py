"""Batch sizes that grow over the first steps (`--curriculum_steps`)."""


class Curriculum:
    """Batch sizes by step: P and K grow from (`start_p`, `start_k`) to (`batch_p`, `batch_k`).

    The official maintainers' advice for a loss stuck at its collapse value is to start with
    small P and K (down to P=2, K=2) and grow them. Over the first `steps` steps the sizes rise
    linearly in `STAGES` equal stages (a few distinct batch shapes, so the training step is
    traced only a few times); from step `steps` on they are the configured ones. `steps` = 0 is
    no curriculum. Sizes are a function of the step alone, so a resumed run continues the
    schedule exactly.
    """
    STAGES = 4

    def __init__(self, batch_p, batch_k, steps=0, start_p=None, start_k=None):
        if not steps:
            self.stages = [(0, batch_p, batch_k)]  # (first step, P, K), in order
            return
        self.stages = [(0, start_p, start_k)]
        for i in range(1, self.STAGES + 1):
            stage = (i * steps // self.STAGES,
                     start_p + (batch_p - start_p) * i // self.STAGES,
                     start_k + (batch_k - start_k) * i // self.STAGES)
            # A stage starting where the previous one does (`steps` < STAGES), or of the same
            # sizes, adds nothing.
            previous = self.stages[-1]
            if stage[0] > previous[0] and stage[1:] != previous[1:]:
                self.stages.append(stage)

    def sizes(self, step):
        """(P, K) of batch `step` (0-based: the batch of training step `step` + 1)."""
        return next((p, k) for first, p, k in reversed(self.stages) if first <= step)

    def spans(self, start_step=0):
        """(first step, end step or None for endless, P, K) of the stages from `start_step` on."""
        ends = [first for first, _, _ in self.stages[1:]] + [None]
        return [(max(first, start_step), end, p, k)
                for (first, p, k), end in zip(self.stages, ends)
                if end is None or end > start_step]
