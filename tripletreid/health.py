"""Training health: notice a collapsed or stalled training while it runs, and say what helps.

The most common failure of batch-hard training (official tracker #30, #54, #91) is a loss stuck
at its collapse value: every embedding on one point, so that positives and negatives are equally
far (softplus(0) = 0.693 with the soft margin). Networks can sit there for hundreds of steps, or
for ever. `HealthMonitor` watches each step's values and reports when such an episode starts and
when it ends. No TensorFlow here: it takes the step's scalar summaries, so that the values
logged by a run can be replayed through it.
"""
import collections
import math

import numpy as np

# `kind` 'collapse' or 'stall'; `started` True when it starts at `step`, False when it ends there;
# `since` the step it started at; `values` the step's values (loss, spread, precision at K-1,
# active fraction) and the moves of the window that ends at it (see `HealthMonitor`).
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
    """Flags a collapse (embeddings on one point, loss at its collapse value) and a stall (over
    `window` steps nothing that shows progress moved, on a network that has not learnt yet).

    Collapse, per step: the spread (see `spread`) is below `min_spread` and the mean loss is
    within `tolerance` of the collapse value (a loss far above it with a small spread is a
    divergence, not a collapse); it ends once the spread exceeds twice `min_spread` or the loss
    is twice `tolerance` away.

    Stall: the batch-hard loss alone is no measure of progress (as the embedding improves the
    hardest triplets get harder, and the loss can stay near 0.7-1.0 for thousands of healthy
    steps), so three values count, each the mean of the window's second half against its first:
    the loss falling by `min_improvement`, the batch precision at K-1 rising by
    `min_precision_rise`, the fraction of active triplets falling by `min_active_fall`. A stall
    starts when none moved that far, the loss is not below the collapse value by `tolerance`,
    and the network has not learnt: a precision `learnt` above its mean over the first half
    window watched means a plateau after learning (the end of a decayed schedule), not a stall.
    It ends once one of the three moves twice as far, the loss drops twice `tolerance` below
    the collapse value, or the network has learnt. A stall does not start while a collapse is
    under way (it is part of it). With `stalls` False no stall is reported: beside an identity
    loss, which then drives the training, the triplet loss may rest on a plateau while the
    network improves.
    """

    def __init__(self, margin, min_spread=0.1, tolerance=0.1, min_improvement=0.05,
                 min_precision_rise=0.02, min_active_fall=0.02, learnt=0.05, patience=10,
                 window=200, stalls=True):
        self.collapse_value = collapse_loss(margin)
        self.min_spread = min_spread
        self.tolerance = tolerance
        # The least move of each value over the window that counts as progress.
        self.min_moves = {'loss_fall': min_improvement, 'precision_rise': min_precision_rise,
                          'active_fall': min_active_fall}
        self.learnt = learnt
        self.window = collections.deque(maxlen=window)  # (loss, precision, active) by step
        self.start_precision = None  # the mean precision of the first half window watched
        self.collapse = Episode(patience)
        self.stall = Episode(patience)
        self.stalls = stalls
        self.values = {}  # the last step's values and the window's moves

    def update(self, step, loss, spread_, precision, active):
        """Feed one step's scalar summaries (as logged, so that logged runs can be replayed):
        the mean `loss`, the embeddings' `spread_` (see `spread`), the batch precision at K-1
        and the fraction of active triplets. Return the `Event`s at this step."""
        loss, spread_ = float(loss), float(spread_)
        self.window.append((loss, float(precision), float(active)))
        moves, level, learnt = self._window_trend()
        self.values = {'loss': loss, 'spread': spread_, 'precision': float(precision),
                       'active': float(active), **moves}
        off = abs(loss - self.collapse_value)
        events = self._update('collapse', step,
                              starting=spread_ < self.min_spread and off < self.tolerance,
                              ending=spread_ > 2 * self.min_spread or off > 2 * self.tolerance)
        progress = max(moves[name] / least for name, least in self.min_moves.items())
        return events + self._update('stall', step,
                                     starting=self.stalls and not self.collapse.active
                                     and progress < 1 and level > -self.tolerance
                                     and not learnt,
                                     ending=progress > 2 or level < -2 * self.tolerance
                                     or learnt)

    def _update(self, kind, step, starting, ending):
        """Feed the episode `kind` (`collapse` or `stall`); [its Event] if it starts or ends."""
        episode = getattr(self, kind)
        if not episode.update(step, starting, ending):
            return []
        return [Event(kind, episode.active, step, episode.since, self.values)]

    def _window_trend(self):
        """({'loss_fall', 'precision_rise', 'active_fall'} from the first to the second half of
        the window, level of the second half's loss above the collapse value, whether the
        second half's precision is `learnt` above the start's). NaN moves and level until the
        window is full, which counts as neither stalled nor progressing."""
        if len(self.window) < self.window.maxlen:
            return dict.fromkeys(self.min_moves, math.nan), math.nan, False
        values = np.array(self.window)
        half = len(values) // 2
        earlier, later = values[:half].mean(axis=0), values[half:].mean(axis=0)
        if self.start_precision is None:
            self.start_precision = earlier[1]
        moves = {'loss_fall': earlier[0] - later[0], 'precision_rise': later[1] - earlier[1],
                 'active_fall': earlier[2] - later[2]}
        return ({name: float(move) for name, move in moves.items()},
                float(later[0] - self.collapse_value),
                bool(later[1] - self.start_precision >= self.learnt))

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
            what = self._describe_stall(event)
        return (f'Training health: {what}. Training may get past it by itself; if it does not, '
                f'restart with {"; or ".join(remedies)}.')

    def _describe_stall(self, event):
        """What did not move over the window, by how much it moved and how far it had to."""
        values, least = event.values, self.min_moves
        return (f'the training stalled at step {event.step}: over the last '
                f'{self.window.maxlen} steps the loss did not fall (by '
                f'{values["loss_fall"]:.3f}, less than {least["loss_fall"]:g}), nor did the '
                f'batch precision at K-1 rise (by {values["precision_rise"]:.3f}, less than '
                f'{least["precision_rise"]:g}) or the fraction of active triplets fall (by '
                f'{values["active_fall"]:.3f}, less than {least["active_fall"]:g}); the loss is '
                f'not below {self.collapse_value:.3f}, its value for collapsed embeddings (loss '
                f'{values["loss"]:.3f}, precision {values["precision"]:.3f}, active '
                f'{values["active"]:.3f}, spread {values["spread"]:.3f})')

    def markers(self):
        """Short names of the episodes under way, for the console line."""
        return [name for name, episode in (('COLLAPSED', self.collapse), ('STALLED', self.stall))
                if episode.active]


def remedies(config, head_names, loss_names):
    """What may get a new run past a collapse or a stall, as flags: only those that apply to
    the experiment's `TrainConfig` (`tripletreid.experiment`).

    The official maintainers' advice: a lower learning rate, small P and K at first then grown
    (down to P=2, K=2 on their hardest data), the `batch_sample` loss, a normalised embedding;
    and ours, for a batch-hard run: the `batch_all` loss.
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
    if 'batch_all' in loss_names and config.loss == 'batch_hard':
        # OSNet from scratch on CUHK03 stalled near chance under batch_hard at every learning
        # rate tried, and learned under batch_all (BENCHMARKS.md, issue 19).
        tips.append('every valid triplet instead of the hardest (--loss batch_all)')
    if f'{config.head_name}_normalize' in head_names:
        tips.append(f'a normalising head (--head_name {config.head_name}_normalize)')
    return tips
