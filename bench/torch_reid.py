"""The PyTorch peer of our training and embedding step, for the benchmarks only (torch is no
dependency of the project: bench scripts skip it when it is not installed).

What a PyTorch re-ID code base runs (TriNet of "In Defense of the Triplet Loss"), written by
hand because torchvision's wheel does not import next to the local torch:

- ResNet-50 of bottleneck units with the stride in the 3x3 convolution. `layout='slim'` (the
  default) is exactly our `nets/resnet_v1.py`: the stride of each block in its *last* unit and a
  1x1 max-pool subsampling shortcut where depths agree, so both networks do the same FLOPs.
  `layout='torchvision'` is torchvision's ResNet-50 v1.5 (stride in the first unit of each block,
  projection shortcut there): 17% more FLOPs at 256x128, its first 1x1 convolution of each
  block running before the downsampling (see bench_flops.py).
- The fc1024 head: Linear 2048->1024 without bias, BatchNorm1d, ReLU, Linear 1024->128.
- Batch-hard soft-margin loss on euclidean distances (1e-12 under the root, as ours), Adam.
- Batches of P identities x K images from the same JPEGs, decoded, resized, flipped and
  cropped with Pillow in a DataLoader process, NCHW float32, as torchvision's transforms do.
"""
import os
import time

import numpy as np
import torch
from PIL import Image
from torch import nn

from benchlib import Task

RGB_MEAN = (123.68, 116.78, 103.94)


def conv_bn(cin, cout, kernel, stride=1, relu=True, momentum=0.003):
    layers = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False),
              nn.BatchNorm2d(cout, eps=1e-5, momentum=momentum)]
    return nn.Sequential(*layers, nn.ReLU(inplace=True)) if relu else nn.Sequential(*layers)


class Bottleneck(nn.Module):
    def __init__(self, cin, depth, stride):
        super().__init__()
        if cin == depth:  # slim's subsampling shortcut (a 1x1 max-pool) or identity
            self.shortcut = nn.MaxPool2d(1, stride) if stride > 1 else nn.Identity()
        else:
            self.shortcut = conv_bn(cin, depth, 1, stride, relu=False)
        self.residual = nn.Sequential(conv_bn(cin, depth // 4, 1),
                                      conv_bn(depth // 4, depth // 4, 3, stride),
                                      conv_bn(depth // 4, depth, 1, relu=False))

    def forward(self, x):
        return torch.relu(self.shortcut(x) + self.residual(x))


def resnet50(layout='slim'):
    """Raw RGB [N, 3, H, W] in [0, 255] to the 2048-D global average pool."""
    units = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64, eps=1e-5, momentum=0.003),
             nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)]
    cin = 64
    for b, (count, stride) in enumerate(zip((3, 4, 6, 3), (2, 2, 2, 1))):
        depth = 256 * 2 ** b
        if layout == 'torchvision':  # v1.5: the previous block's stride moves to this first unit
            strides = [(1, 2, 2, 2)[b]] + [1] * (count - 1)
        else:
            strides = [1] * (count - 1) + [stride]
        for unit_stride in strides:
            units.append(Bottleneck(cin, depth, unit_stride))
            cin = depth
    return nn.Sequential(*units, nn.AdaptiveAvgPool2d(1), nn.Flatten())


class TriNet(nn.Module):
    def __init__(self, layout='slim', embedding_dim=128):
        super().__init__()
        self.register_buffer('mean', torch.tensor(RGB_MEAN).view(1, 3, 1, 1))
        self.backbone = resnet50(layout)
        self.head = nn.Sequential(nn.Linear(2048, 1024, bias=False),
                                  nn.BatchNorm1d(1024, eps=1e-5, momentum=0.1), nn.ReLU(),
                                  nn.Linear(1024, embedding_dim))
        nn.init.orthogonal_(self.head[3].weight)

    def forward(self, images):
        return self.head(self.backbone(images - self.mean))


def batch_hard_soft(embeddings, pids):
    diffs = embeddings[:, None] - embeddings[None]
    dists = torch.sqrt((diffs * diffs).sum(-1) + 1e-12)
    same = pids[:, None] == pids[None]
    positive = same & ~torch.eye(len(pids), dtype=torch.bool)
    furthest_positive = torch.where(positive, dists, 0.0).max(1).values
    big = dists.detach().max() + 1.0
    closest_negative = torch.where(same, big, dists).min(1).values
    return nn.functional.softplus(furthest_positive - closest_negative)


class PKImages(torch.utils.data.Dataset):
    """Images by index: decoded, resized to the pre-crop size, flipped and cropped at random."""

    def __init__(self, paths, pre_crop, crop):
        self.paths, self.pre_crop, self.crop = paths, pre_crop, crop

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        image = Image.open(self.paths[index]).convert('RGB')
        image = np.asarray(image.resize(self.pre_crop[::-1], Image.BILINEAR), np.float32)
        rng = np.random.default_rng()
        if rng.random() < 0.5:
            image = image[:, ::-1]
        y = rng.integers(0, self.pre_crop[0] - self.crop[0] + 1)
        x = rng.integers(0, self.pre_crop[1] - self.crop[1] + 1)
        image = image[y:y + self.crop[0], x:x + self.crop[1]]
        return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


class PKBatches(torch.utils.data.Sampler):
    """Endless batches of P identities x K of their images (repeated when fewer than K)."""

    def __init__(self, labels, p, k, seed=0):
        self.by_id = [np.flatnonzero(labels == i) for i in range(labels.max() + 1)]
        self.p, self.k, self.rng = p, k, np.random.default_rng(seed)

    def __iter__(self):
        while True:
            ids = self.rng.choice(len(self.by_id), self.p, replace=False)
            yield [int(i) for pid in ids for i in self.rng.choice(
                self.by_id[pid], self.k, replace=len(self.by_id[pid]) < self.k)]


def to_format(tensor_or_model, channels_last):
    return tensor_or_model.to(memory_format=torch.channels_last if channels_last
                              else torch.contiguous_format)


def training_task(csv, image_root, batch_p=18, batch_k=4, height=256, width=128,
                  layout='slim', threads=2, loader_workers=1, channels_last=False):
    """One Adam step of TriNet on a PK batch from the JPEGs of `csv` (`identity,path` rows);
    `channels_last`: NHWC activations (oneDNN's preferred layout) instead of NCHW."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    rows = [line.rstrip('\n').split(',') for line in open(csv)]
    _, labels = np.unique([row[0] for row in rows], return_inverse=True)
    paths = [os.path.join(image_root, row[1]) for row in rows]
    images = PKImages(paths, (height * 9 // 8, width * 9 // 8), (height, width))
    loader = iter(torch.utils.data.DataLoader(
        images, batch_sampler=PKBatches(labels, batch_p, batch_k), num_workers=loader_workers,
        persistent_workers=loader_workers > 0))
    pids = torch.arange(batch_p).repeat_interleave(batch_k)
    model = to_format(TriNet(layout).train(), channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4, eps=1e-8)

    def step():
        batch = to_format(next(loader), channels_last)
        optimizer.zero_grad(set_to_none=True)
        loss = batch_hard_soft(model(batch), pids).mean()
        loss.backward()
        optimizer.step()
        return loss.item()

    return Task(step, batch_p * batch_k, info={'torch_threads': torch.get_num_threads()})


def folded(model, images, fold):
    """The eval-mode `model` as tuned inference runs it, batch norms folded into the
    convolutions (and the head's linear layer) before them (`fold`):

    - 'fx': torch.fx's `fuse` (folded weights, in the model's memory format; still eager);
    - 'jit_freeze': traced by TorchScript and frozen (`torch.jit.freeze`: weights become
      constants, batch norms are folded, oneDNN fusions of convolution and ReLU);
    - 'compile': `torch.compile` (Inductor: C++ kernels compiled for this CPU for the
      element-wise work) with Inductor's freezing (batch norms folded, convolution weights
      prepacked for oneDNN); it compiles on the first call.
    """
    if fold == 'fx':
        from torch.fx.experimental.optimization import fuse
        return fuse(model)
    if fold == 'jit_freeze':
        with torch.no_grad():
            return torch.jit.freeze(torch.jit.trace(model, images))
    from torch._inductor import config
    config.freezing = True
    return torch.compile(model)


def inference_task(batch=64, height=256, width=128, layout='slim', threads=2,
                   channels_last=False, fold=None):
    """Embeddings of one fixed batch, in eval mode under `torch.inference_mode()` (what
    embedding runs); `fold`: eager with batch norms apart (None) or folded (see `folded`). A
    folded model's first call (compilation included) is made here, to compare its embeddings
    with the eager model's: `info['relative_difference']`, the largest difference over the
    largest entry; `info['fold_seconds']`: folding and that first call (tracing, compiling)."""
    torch.set_num_threads(threads)
    model = to_format(TriNet(layout).eval(), channels_last)
    images = to_format(torch.rand(batch, 3, height, width) * 255, channels_last)
    info = {'torch_threads': torch.get_num_threads()}
    if fold:
        with torch.inference_mode():
            eager = model(images)
        began = time.perf_counter()
        model = folded(model, images, fold)
        with torch.inference_mode():
            difference = (model(images) - eager).abs().max() / eager.abs().max()
        info.update(relative_difference=float(difference),
                    fold_seconds=round(time.perf_counter() - began, 1))

    def forward():
        with torch.inference_mode():
            return model(images).sum().item()

    return Task(forward, batch, info)


def training_flops(height=256, width=128, batch=72, layout='slim'):
    """FLOPs of one training step (forward + backward) by torch's own counter, per image."""
    from torch.utils.flop_counter import FlopCounterMode
    model = TriNet(layout).train()
    images = torch.rand(batch, 3, height, width) * 255
    pids = torch.arange(batch // 4).repeat_interleave(4)
    with FlopCounterMode(display=False) as counter:
        embeddings = model(images)
        forward = counter.get_total_flops()
        batch_hard_soft(embeddings, pids).mean().backward()
    return {'forward': forward / batch, 'training': counter.get_total_flops() / batch}
