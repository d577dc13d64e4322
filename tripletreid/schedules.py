"""Learning-rate schedules and the optimizer (Adam as the official code, or AdamW)."""
import keras
from keras import ops


@keras.saving.register_keras_serializable(package='triplet_reid')
class PaperDecay(keras.optimizers.schedules.LearningRateSchedule):
    """The paper's schedule: constant, then exponential decay to 0.001x at the last step.

    lr(t) = lr0 * 0.001 ** (max(0, t - t0) / (T - t0)) for t0 = `decay_start` < T = `total`;
    a negative `decay_start` (or one past `total`) keeps the rate constant, as the official.
    """

    def __init__(self, initial, decay_start, total):
        self.initial = float(initial)
        self.decay_start = int(decay_start)
        self.total = int(total)

    def __call__(self, step):
        if not 0 <= self.decay_start < self.total:
            return ops.convert_to_tensor(self.initial, 'float32')
        done = ops.maximum(ops.cast(step, 'float32') - self.decay_start, 0.0)
        return self.initial * ops.power(0.001, done / (self.total - self.decay_start))

    def get_config(self):
        return {'initial': self.initial, 'decay_start': self.decay_start, 'total': self.total}


@keras.saving.register_keras_serializable(package='triplet_reid')
class LinearWarmUp(keras.optimizers.schedules.LearningRateSchedule):
    """`schedule` times a linear ramp over the first `steps` steps: (t + 1) / `steps`, then 1.

    Full-size first updates of a fresh network can throw every embedding onto one point (the
    collapse of `health.py`); a ramp lets the batch statistics and the embedding settle first.
    The first step already moves (1/`steps` of the rate), step `steps` - 1 on uses the full
    rate. Like `schedule`, it is a function of the optimizer's step counter, which checkpoints
    keep, so a resumed run continues the ramp where it stopped.
    """

    def __init__(self, schedule, steps):
        self.schedule = schedule
        self.steps = int(steps)

    def __call__(self, step):
        ramp = ops.minimum((ops.cast(step, 'float32') + 1.0) / self.steps, 1.0)
        return self.schedule(step) * ramp

    def get_config(self):
        return {'schedule': keras.optimizers.schedules.serialize(self.schedule),
                'steps': self.steps}

    @classmethod
    def from_config(cls, config):
        return cls(keras.optimizers.schedules.deserialize(config['schedule']), config['steps'])


def make_schedule(learning_rate, train_iterations, decay_start_iteration, kind='paper',
                  decay_steps=(), decay_factor=0.1):
    """The learning rate as a function of the step: the paper's (default), step or cosine."""
    learning_rate = float(learning_rate)  # Keras' schedules compute in the dtype they are given
    if kind == 'step':
        return keras.optimizers.schedules.PiecewiseConstantDecay(
            [s - 1 for s in decay_steps],  # the rate drops after that many steps
            [learning_rate * decay_factor ** i for i in range(len(decay_steps) + 1)])
    if kind == 'cosine':
        return keras.optimizers.schedules.CosineDecay(learning_rate, train_iterations)
    return PaperDecay(learning_rate, decay_start_iteration, train_iterations)


def make_optimizer(schedule, warmup_iterations=0, weight_decay=0.0):
    """Adam with TF1's defaults (epsilon 1e-8) on the learning-rate `schedule`, after a linear
    warm-up over `warmup_iterations` steps if any.

    `weight_decay` is decoupled (AdamW): each step shrinks every kernel by learning rate times
    `weight_decay`; batch-norm parameters and biases are left alone.
    """
    if warmup_iterations:
        schedule = LinearWarmUp(schedule, warmup_iterations)
    optimizer = keras.optimizers.Adam(schedule, epsilon=1e-8, weight_decay=weight_decay or None)
    if weight_decay:
        optimizer.exclude_from_weight_decay(var_names=['gamma', 'beta', 'bias'])
    return optimizer


def optimizer_of(config):
    """The optimizer of an experiment's `TrainConfig`: Adam (or AdamW) on its learning-rate
    schedule, after its warm-up."""
    schedule = make_schedule(config.learning_rate, config.train_iterations,
                             config.decay_start_iteration, config.lr_schedule,
                             config.lr_decay_steps, config.lr_decay_factor)
    return make_optimizer(schedule, config.warmup_iterations, config.weight_decay)
