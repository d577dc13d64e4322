"""Training health: notice a collapsed or stalled training while it runs, and say what helps.

The most common failure of batch-hard training (official tracker #30, #54, #91) is a loss stuck
at its collapse value: every embedding on one point, so that positives and negatives are equally
far (softplus(0) = 0.693 with the soft margin). Networks can sit there for hundreds of steps, or
for ever. `HealthMonitor` watches each step's values and reports when such an episode starts and
when it ends. No TensorFlow here: it takes the step's values as numpy arrays.
"""
import collections
import math

import numpy as np

# `kind` 'collapse' or 'stall'; `started` True when it starts at `step`, False when it ends there;
# `since` the step it started at; `values` the step's loss and spread.
Event = collections.namedtuple('Event', 'kind started step since values')


def collapse_loss(margin):
    """The loss when all embeddings coincide (d(a,p) = d(a,n)): softplus(0), the margin, or 0."""
    if margin == 'soft':
        return math.log(2)
    if margin == 'none':
        return 0.0
    return float(margin)


def spread(embeddings):
    """How far apart a batch's embeddings are, relative to their length: 0 when they coincide.

    The root-mean-square distance of the embeddings from their mean over their root-mean-square
    length (the root-mean-square pairwise distance is sqrt(2) times the former). Embeddings
    spread around the origin give about 1; a common offset with little around it gives about 0,
    whatever the scale. Computed in float64 from the deviations, so a tiny spread stays exact.
    """
    embeddings = np.asarray(embeddings, np.float64)
    deviation = np.sqrt(np.mean(np.sum(np.square(embeddings - embeddings.mean(axis=0)), axis=1)))
    length = np.sqrt(np.mean(np.sum(np.square(embeddings), axis=1)))
    return float(deviation / length) if length > 0 else 0.0


class Episode:
    """A condition with hysteresis: reported once when it starts, once when it ends.

    It starts after `patience` consecutive steps that look like it and ends after `patience`
    consecutive steps that clearly do not, so noise from batch to batch does not make it flicker.
    """

    def __init__(self, patience):
        self.patience = patience
        self.active = False
        self.since = None  # the step the latest episode started at
        self._count = 0

    def update(self, step, starting, ending):
        """Feed one step; return True when the episode starts or ends at it."""
        evidence = ending if self.active else starting
        self._count = self._count + 1 if evidence else 0
        if self._count < self.patience:
            return False
        self._count = 0
        self.active = not self.active
        if self.active:
            self.since = step
        return True


class HealthMonitor:
    """Flags a collapse (embeddings on one point, loss at its collapse value) and a stall (the
    loss not improving over `window` steps while not below its collapse value).

    Collapse, per step: the spread (see `spread`) is below `min_spread` and the mean loss is
    within `tolerance` of the collapse value (a loss far above it with a small spread is a
    divergence, not a collapse); it ends once the spread exceeds twice `min_spread` or the loss
    is twice `tolerance` away. Stall: the mean loss of the second half of the window is lower
    than that of the first half by less than `min_improvement`, and not below the collapse
    value by `tolerance`; it ends once it improves by twice that, or drops twice `tolerance`
    below the collapse value. A stall does not start while a collapse is under way (it is
    part of it). With `stalls` False no stall is reported: beside an identity loss, which then
    drives the training, the triplet loss may rest on a plateau while the network improves.
    """

    def __init__(self, margin, min_spread=0.1, tolerance=0.1, min_improvement=0.05,
                 patience=10, window=200, stalls=True):
        self.collapse_value = collapse_loss(margin)
        self.min_spread = min_spread
        self.tolerance = tolerance
        self.min_improvement = min_improvement
        self.window = collections.deque(maxlen=window)
        self.collapse = Episode(patience)
        self.stall = Episode(patience)
        self.stalls = stalls
        self.values = {}  # the last step's loss and spread

    def update(self, step, losses, embeddings):
        """Feed one step's per-anchor losses and embeddings; return the `Event`s at this step."""
        loss = float(np.mean(losses))
        self.window.append(loss)
        self.values = {'loss': loss, 'spread': spread(embeddings)}
        off = abs(loss - self.collapse_value)
        events = self._update('collapse', step,
                              starting=self.values['spread'] < self.min_spread
                              and off < self.tolerance,
                              ending=self.values['spread'] > 2 * self.min_spread
                              or off > 2 * self.tolerance)
        improvement, level = self._window_trend()
        return events + self._update('stall', step,
                                     starting=self.stalls and not self.collapse.active
                                     and improvement < self.min_improvement
                                     and level > -self.tolerance,
                                     ending=improvement > 2 * self.min_improvement
                                     or level < -2 * self.tolerance)

    def _update(self, kind, step, starting, ending):
        """Feed the episode `kind` (`collapse` or `stall`); [its Event] if it starts or ends."""
        episode = getattr(self, kind)
        if not episode.update(step, starting, ending):
            return []
        return [Event(kind, episode.active, step, episode.since, self.values)]

    def _window_trend(self):
        """(improvement from the first to the second half of the window, level of the second
        half above the collapse value); (nan, nan) until the window is full, which counts as
        neither stalled nor improving."""
        if len(self.window) < self.window.maxlen:
            return math.nan, math.nan
        losses = np.array(self.window)
        half = len(losses) // 2
        later = losses[half:].mean()
        return float(losses[:half].mean() - later), float(later - self.collapse_value)

    def describe(self, event, remedies):
        """The warning (or all-clear) for `event`, with the `remedies` that apply."""
        loss, spread_ = event.values['loss'], event.values['spread']
        if not event.started:
            return (f'Training health: the {event.kind} that began at step {event.since} ended '
                    f'at step {event.step} (loss {loss:.3f}, spread {spread_:.3f}).')
        if event.kind == 'collapse':
            what = (f'the embeddings collapsed at step {event.step}: every image maps to nearly '
                    f'the same point (spread {spread_:.3f}; loss {loss:.3f}, the value of '
                    f'collapsed embeddings is {self.collapse_value:.3f} for this margin)')
        else:
            what = (f'the loss stalled at step {event.step}: no improvement over the last '
                    f'{self.window.maxlen} steps, and not below {self.collapse_value:.3f}, its '
                    f'value for collapsed embeddings (loss {loss:.3f}, spread {spread_:.3f})')
        return (f'Training health: {what}. Training may get past it by itself; if it does not, '
                f'restart with {"; or ".join(remedies)}.')

    def markers(self):
        """Short names of the episodes under way, for the console line."""
        return [name for name, episode in (('COLLAPSED', self.collapse), ('STALLED', self.stall))
                if episode.active]


def remedies(config, head_names, loss_names):
    """What may get a new run past a collapse or a stall, as flags: only those that apply to
    the experiment's `TrainConfig` (`tripletreid.experiment`).

    The official maintainers' advice: a lower learning rate, small P and K at first then grown
    (down to P=2, K=2 on their hardest data), the `batch_sample` loss, a normalised embedding.
    """
    steps = max(1, min(1000, config.train_iterations // 10))
    tips = [f'a lower learning rate (--learning_rate {config.learning_rate / 10:g})',
            f'a longer warm-up than --warmup_iterations {config.warmup_iterations}'
            if config.warmup_iterations else f'a warm-up (--warmup_iterations {steps})',
            f'a longer curriculum than --curriculum_steps {config.curriculum_steps}'
            if config.curriculum_steps else
            f'fewer identities per batch at first (--curriculum_steps {steps} '
            f'--curriculum_start_p 2 --curriculum_start_k 2)']
    if 'batch_sample' in loss_names and config.loss != 'batch_sample':
        tips.append('sampled instead of hardest triplets (--loss batch_sample)')
    if f'{config.head_name}_normalize' in head_names:
        tips.append(f'a normalising head (--head_name {config.head_name}_normalize)')
    return tips
