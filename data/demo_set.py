"""A small synthetic person re-identification dataset in the Market-1501 layout
(`python -m data.demo OUTPUT_ROOT` writes one).

`make_demo_dataset` writes `bounding_box_train/`, `query/`, `bounding_box_test/` with
Market-1501 file names (`PPPP_cCsS_FFFFFF_NN.jpg`) and the three CSVs
`market1501_{train,query,test}.csv`, so that the training and evaluation scripts can be tried
in minutes on a CPU without downloading anything.

The people are cartoon figures drawn with OpenCV. An identity is a combination of clothing and
body cues (upper/lower colours from a small shared palette, pattern, sleeves, trousers/shorts/
skirt, hair, hat, bag, build); each camera has its own lighting, scale, blur, noise and
background, and each image its own pose, position, view (front/back) and JPEG quality. No single
cue tells identities apart, and nothing constant over an image (background, colour cast) belongs
to an identity, so a network has to learn the combinations, across cameras, as on real data.
"""
import collections
import os

import cv2
import numpy as np

from tripletreid.errors import InputError
from data.builders import SPLITS, build_market1501

SUPERSAMPLING = 2  # people are drawn at twice the size, then shrunk: smooth edges for free
PALETTE = {  # BGR; shared by all identities, so one colour alone never identifies anybody
    'black': (35, 35, 35), 'white': (230, 230, 230), 'gray': (128, 128, 128),
    'navy': (90, 40, 25), 'blue': (200, 110, 40), 'denim': (140, 95, 55), 'red': (40, 40, 190),
    'green': (60, 140, 50), 'yellow': (40, 200, 230), 'beige': (140, 180, 205),
    'brown': (40, 70, 115), 'pink': (180, 130, 235), 'purple': (130, 50, 115),
    'orange': (30, 120, 235),
}
UPPER_COLOURS = tuple(PALETTE)
LOWER_COLOURS = ('black', 'navy', 'denim', 'gray', 'beige', 'brown', 'white', 'red')
PATTERNS = ('plain', 'stripes', 'checks', 'jacket', 'logo')
LOWER_KINDS = ('trousers', 'trousers', 'shorts', 'skirt')
SKIN = ((95, 135, 185), (125, 165, 215), (60, 90, 140), (150, 190, 230))
HAIR = ((20, 20, 25), (30, 50, 90), (90, 170, 210), (150, 150, 150), (30, 60, 150))
BAGS = ('none', 'none', 'backpack', 'shoulder')

Person = collections.namedtuple(
    'Person', 'upper pattern second sleeves lower kind shoes skin hair long_hair hat bag '
              'bag_colour bag_side build height')
Camera = collections.namedtuple('Camera', 'gain scale blur noise shade background')


def _shade(rng, name, spread=10):
    """A palette colour, shifted a little per identity: same name, slightly different cloth."""
    return tuple(int(c) for c in np.clip(np.array(PALETTE[name]) + rng.normal(0, spread, 3),
                                         0, 255))


def random_person(rng):
    """The appearance of one identity, fixed over all its images."""
    upper = rng.choice(UPPER_COLOURS)
    second = rng.choice([c for c in UPPER_COLOURS if c != upper])
    return Person(
        upper=_shade(rng, upper), pattern=rng.choice(PATTERNS), second=_shade(rng, second),
        sleeves=rng.choice(('long', 'short')), lower=_shade(rng, rng.choice(LOWER_COLOURS)),
        kind=rng.choice(LOWER_KINDS), shoes=_shade(rng, rng.choice(('black', 'white', 'brown'))),
        skin=SKIN[rng.integers(len(SKIN))], hair=HAIR[rng.integers(len(HAIR))],
        long_hair=rng.random() < 0.35,
        hat=_shade(rng, rng.choice(UPPER_COLOURS)) if rng.random() < 0.25 else None,
        bag=rng.choice(BAGS), bag_colour=_shade(rng, rng.choice(UPPER_COLOURS)),
        bag_side=rng.choice((-1, 1)), build=rng.uniform(0.85, 1.2), height=rng.uniform(0.9, 1.0))


def _background(rng, kind, height, width):
    """A camera's scene: wall and floor, bricks, foliage or a gradient, with grain."""
    base = np.clip(rng.uniform(50, 210) + rng.normal(0, 25, 3), 0, 255)  # greyish, as streets
    other = np.clip(base + rng.normal(0, 50, 3), 0, 255)
    line = tuple(float(c) for c in np.clip(base * rng.uniform(0.5, 1.4), 0, 255))
    scene = np.empty((height, width, 3), np.float32)
    scene[:] = base
    if kind == 0:
        horizon = int(height * rng.uniform(0.45, 0.8))
        scene[horizon:] = other
        step = int(rng.integers(width // 6, width // 2))
        for x in range(int(rng.integers(step)), width, step):
            cv2.line(scene, (x, 0), (x, horizon), line, int(rng.integers(2, 8)))
    elif kind == 1:
        brick = int(rng.integers(10, 24))
        for row, y in enumerate(range(0, height, brick)):
            cv2.line(scene, (0, y), (width, y), line, 2)
            for x in range((row % 2) * brick, width, 2 * brick):
                cv2.line(scene, (x, y), (x, y + brick), line, 2)
    elif kind == 2:
        for _ in range(int(height * width / 300)):
            colour = tuple(float(c) for c in np.clip(base + rng.normal(0, 35, 3), 0, 255))
            centre = (int(rng.integers(width)), int(rng.integers(height)))
            cv2.circle(scene, centre, int(rng.integers(4, 14)), colour, -1)
        scene = cv2.GaussianBlur(scene, (0, 0), 2)
    else:
        t = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
        scene[:] = base * (1 - t) + other * t
    scene += rng.normal(0, rng.uniform(3, 12), scene.shape)
    return np.clip(scene, 0, 255).astype(np.uint8)


def random_cameras(rng, num_cameras, height, width):
    """Cameras with their own lighting (brightness, colour cast, shading), scale and scene."""
    margin = width // 2
    kinds = rng.permutation(4)
    return [Camera(gain=rng.uniform(0.65, 1.25) * rng.uniform(0.82, 1.18, 3),
                   scale=rng.uniform(0.72, 0.92), blur=rng.uniform(0, 0.9),
                   noise=rng.uniform(2, 7), shade=rng.uniform(-0.25, 0.1),
                   background=_background(rng, kinds[i % 4], height + margin, width + margin))
            for i in range(num_cameras)]


def _pt(x, y):
    """Integer pixel coordinates, as OpenCV's drawing functions want them."""
    return int(round(x)), int(round(y))


def _limb(canvas, start, angle, length, colour, thickness):
    """Draw a limb from `start` at `angle` (radians from straight down); return its end."""
    end = (start[0] + length * np.sin(angle), start[1] + length * np.cos(angle))
    cv2.line(canvas, _pt(*start), _pt(*end), colour, max(1, int(thickness)), cv2.LINE_AA)
    return end


def _pattern(kind, ys, xs, centre_x, chest_y, u):
    """Where a torso of this pattern shows its second colour (`ys`, `xs`: pixel grids)."""
    period = max(3, int(u * 0.035))
    if kind == 'stripes':
        return (ys // period) % 2 == 0
    if kind == 'checks':
        return (ys // period + xs // period) % 2 == 0
    middle = np.abs(xs - centre_x) < u * 0.035
    if kind == 'jacket':
        return middle
    if kind == 'logo':
        return middle & (np.abs(ys - chest_y) < u * 0.035)
    return np.zeros((1, 1), bool)


Figure = collections.namedtuple('Figure', 'x top u shoulder_y hip_y shoulder_w hip_w')


def _figure(person, centre_x, top, u):
    """Where the body parts of `person`, `u` pixels tall, go."""
    return Figure(centre_x, top, u, top + 0.16 * u, top + 0.52 * u,
                  0.12 * u * person.build, 0.09 * u * person.build)


def draw_person(canvas, person, centre_x, top, u, stride, back_view):
    """Draw a person-like figure of height `u`; `stride` goes from 0 (standing) to 1 (walking).

    The back view shows a backpack whole and the head covered by hair; the front view shows
    the face and only the straps of a backpack.
    """
    figure = _figure(person, centre_x, top, u)
    _legs(canvas, person, figure, stride)
    if person.long_hair:
        head_r = 0.065 * u
        cv2.rectangle(canvas, _pt(centre_x - head_r * 1.1, top + head_r),
                      _pt(centre_x + head_r * 1.1, figure.shoulder_y + 0.08 * u), person.hair, -1)
    _torso(canvas, person, figure)
    _bag(canvas, person, figure, back_view)
    _arms(canvas, person, figure, stride)
    _head(canvas, person, figure, back_view)


def _legs(canvas, person, f, stride):
    """Legs in trousers, shorts or under a skirt, and shoes."""
    covered = {'trousers': 1.0, 'shorts': 0.45, 'skirt': 0.0}[person.kind]
    length = f.top + 0.97 * f.u - f.hip_y
    for side in (-1, 1):
        hip, spread = (f.x + side * f.hip_w * 0.55, f.hip_y), side * (0.03 + 0.17 * stride)
        foot = _limb(canvas, hip, spread, length, person.skin, 0.075 * f.u * person.build)
        _limb(canvas, hip, spread, length * covered, person.lower, 0.08 * f.u * person.build)
        cv2.ellipse(canvas, _pt(foot[0] + side * 0.01 * f.u, foot[1]),
                    _pt(0.045 * f.u, 0.022 * f.u), 0, 0, 360, person.shoes, -1, cv2.LINE_AA)
    if person.kind == 'skirt':
        skirt = np.array([_pt(f.x - f.hip_w, f.hip_y - 0.02 * f.u),
                          _pt(f.x + f.hip_w, f.hip_y - 0.02 * f.u),
                          _pt(f.x + f.hip_w * 1.6, f.hip_y + 0.22 * f.u),
                          _pt(f.x - f.hip_w * 1.6, f.hip_y + 0.22 * f.u)])
        cv2.fillPoly(canvas, [skirt], person.lower, cv2.LINE_AA)


def _torso(canvas, person, f):
    """Fill the torso with the upper colour and the identity's pattern in its second colour."""
    polygon = np.array([_pt(f.x - f.shoulder_w, f.shoulder_y),
                        _pt(f.x + f.shoulder_w, f.shoulder_y),
                        _pt(f.x + f.hip_w, f.hip_y), _pt(f.x - f.hip_w, f.hip_y)])
    x, y, w, h = cv2.boundingRect(polygon)
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + w, canvas.shape[1]), min(y + h, canvas.shape[0])
    if x1 <= x0 or y1 <= y0:
        return
    inside = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(inside, [polygon - (x0, y0)], 1)
    inside = inside.astype(bool)
    ys, xs = np.ogrid[y0:y1, x0:x1]
    second = _pattern(person.pattern, ys, xs, f.x, f.shoulder_y + 0.11 * f.u, f.u)
    region = canvas[y0:y1, x0:x1]
    region[inside & ~second] = person.upper
    region[inside & second] = person.second


def _arms(canvas, person, f, stride):
    """Sleeved arms (bare forearms with short sleeves) and hands."""
    for side in (-1, 1):
        shoulder = (f.x + side * (f.shoulder_w - 0.03 * f.u), f.shoulder_y + 0.025 * f.u)
        swing = side * (0.06 + 0.12 * stride)
        elbow = _limb(canvas, shoulder, swing, 0.17 * f.u, person.upper,
                      0.06 * f.u * person.build)
        sleeve = person.upper if person.sleeves == 'long' else person.skin
        hand = _limb(canvas, elbow, swing * 0.4, 0.16 * f.u, sleeve, 0.05 * f.u * person.build)
        cv2.circle(canvas, _pt(*hand), int(0.025 * f.u), person.skin, -1, cv2.LINE_AA)


def _head(canvas, person, f, back_view):
    """Neck, face (or the back of the head), hair on top, and a cap if the person wears one."""
    head_r = 0.065 * f.u
    head = _pt(f.x, f.top + head_r)
    cv2.line(canvas, head, _pt(f.x, f.shoulder_y), person.skin, int(0.05 * f.u))
    cv2.circle(canvas, head, int(head_r), person.hair if back_view else person.skin, -1,
               cv2.LINE_AA)
    cv2.ellipse(canvas, head, _pt(head_r * 1.08, head_r * 1.05), 0, 180, 360,
                person.hat or person.hair, -1, cv2.LINE_AA)
    if person.hat:
        cv2.line(canvas, _pt(f.x - head_r * 1.3, head[1]), _pt(f.x + head_r * 1.3, head[1]),
                 person.hat, max(1, int(0.02 * f.u)))


def _bag(canvas, person, f, back_view):
    """A backpack (seen whole from behind, as straps from the front) or a shoulder bag."""
    colour, side, u = person.bag_colour, person.bag_side, f.u
    strap = max(1, int(0.018 * u))
    if person.bag == 'backpack' and back_view:
        cv2.rectangle(canvas, _pt(f.x - f.shoulder_w * 0.75, f.shoulder_y + 0.03 * u),
                      _pt(f.x + f.shoulder_w * 0.75, f.shoulder_y + 0.27 * u), colour, -1)
    elif person.bag == 'backpack':
        for s in (-1, 1):
            cv2.line(canvas, _pt(f.x + s * f.shoulder_w * 0.6, f.shoulder_y),
                     _pt(f.x + s * f.shoulder_w * 0.55, f.shoulder_y + 0.2 * u), colour, strap)
    elif person.bag == 'shoulder':
        bag_x = f.x + side * (f.shoulder_w + 0.02 * u)
        cv2.line(canvas, _pt(f.x - side * f.shoulder_w * 0.8, f.shoulder_y),
                 _pt(bag_x, f.hip_y - 0.05 * u), colour, strap)
        cv2.rectangle(canvas, _pt(bag_x - 0.05 * u, f.hip_y - 0.07 * u),
                      _pt(bag_x + 0.05 * u, f.hip_y + 0.05 * u), colour, -1)


def render(rng, camera, height, width, person, passer_by=None, junk=False):
    """One camera image of `person`, maybe with a `passer_by` half hidden behind at the side.

    A junk image (Market's `-1`) shows a badly placed box: mostly background or a body part.
    """
    scene_h, scene_w = camera.background.shape[:2]
    y0, x0 = rng.integers(scene_h - height + 1), rng.integers(scene_w - width + 1)
    canvas = cv2.resize(camera.background[y0:y0 + height, x0:x0 + width],
                        (width * SUPERSAMPLING, height * SUPERSAMPLING))
    if passer_by:
        _place(rng, canvas, camera, passer_by, 0.85, _aside(rng))
    if junk:
        _place(rng, canvas, camera, person, rng.uniform(1.6, 2.6), _aside(rng),
               lift=rng.uniform(0, 0.5))
    else:
        _place(rng, canvas, camera, person, rng.uniform(0.95, 1.05), rng.normal(0, 0.04))
    return _photograph(rng, camera, canvas, height, width)


def _aside(rng):
    """A horizontal shift (in image widths) that puts a figure half out of the picture."""
    return rng.uniform(0.45, 0.75) * rng.choice((-1, 1))


def _place(rng, canvas, camera, person, size, shift, lift=0.0):
    """Draw `person` at the camera's scale times `size`, `shift` widths off centre, in a
    random walking pose and view; `lift` moves it up by that part of its height."""
    big_h, big_w = canvas.shape[:2]
    u = big_h * camera.scale * person.height * size
    top = (big_h - u) / 2 + rng.normal(0, 0.02) * big_h - lift * u
    draw_person(canvas, person, big_w * (0.5 + shift), top, u, rng.uniform(0, 1),
                rng.random() < 0.5)


def _photograph(rng, camera, canvas, height, width):
    """What the camera makes of the scene: shrinking, lighting, blur, noise, mirroring."""
    image = cv2.resize(canvas, (width, height), interpolation=cv2.INTER_AREA).astype(np.float32)
    light = camera.gain * rng.uniform(0.92, 1.08)
    shading = 1 + camera.shade * np.linspace(-1, 1, height)
    image *= (shading[:, None, None] * light).astype(np.float32)
    if camera.blur > 0.3:
        image = cv2.GaussianBlur(image, (0, 0), camera.blur)
    image += rng.normal(0, camera.noise, image.shape).astype(np.float32)
    image = np.clip(image, 0, 255).astype(np.uint8)
    return cv2.flip(image, 1) if rng.random() < 0.5 else image


class _Writer:
    """Saves images under Market-1501 names with unique frame numbers and random JPEG quality."""

    def __init__(self, root, rng):
        self.root, self.rng, self.frame, self.counts = root, rng, 0, collections.Counter()

    def save(self, folder, identity, camera, image, box):
        self.frame += 25
        sequence = self.rng.integers(1, 7)
        name = f'{identity}_c{camera}s{sequence}_{self.frame:06d}_{box:02d}.jpg'
        quality = int(self.rng.integers(60, 96))
        ok, data = cv2.imencode('.jpg', image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise RuntimeError(f'OpenCV could not encode {name}')
        data.tofile(os.path.join(self.root, folder, name))
        self.counts[folder] += 1


def _check_sizes(num_train_ids, num_test_ids, num_cameras, images, height, width, extra):
    """Refuse sizes the Market naming or the drawing cannot hold, before writing anything."""
    if num_train_ids < 1 or num_test_ids < 1:
        raise InputError('the demo needs at least one train and one test identity')
    if num_train_ids + num_test_ids > 9999:
        raise InputError('Market-1501 names hold at most 9999 identities')
    if not 2 <= num_cameras <= 9:
        raise InputError('the demo needs 2 to 9 cameras (Market names have one digit)')
    if images < 1:
        raise InputError('images_per_camera must be at least 1')
    if height < 32 or width < 16:
        raise InputError('images must be at least 32x16 pixels')
    if ((num_train_ids + num_test_ids) * num_cameras * (images + 1) + extra) * 25 > 999999:
        raise InputError('too many images for the 6-digit frame numbers of Market names')


def _shots(test, images_per_camera):
    """(folder, box number) of the images of one identity in one camera; a test identity's
    extra image is its query, numbered 00 as in Market."""
    folder = 'bounding_box_test' if test else 'bounding_box_train'
    return [(folder, box) for box in range(1, images_per_camera + 1)] + [('query', 0)] * test


def make_demo_dataset(root, num_train_ids=100, num_test_ids=50, images_per_camera=3,
                      num_cameras=6, height=128, width=64, seed=0, num_distractors=20,
                      num_junk=20):
    """Write a synthetic Market-1501-like dataset and its CSVs to the new or empty folder `root`.

    Every identity shows in 2 to `num_cameras` cameras, with `images_per_camera` images in
    each; a test identity has one more per camera, which goes to `query/` (so every query has
    matches in other cameras). The gallery `bounding_box_test/` also holds `num_distractors`
    people `0000` never queried and `num_junk` bad boxes `-1`. Train and test are different
    people. Returns a summary dict: the CSV paths and the image counts per folder.
    """
    _check_sizes(num_train_ids, num_test_ids, num_cameras, images_per_camera, height, width,
                 num_distractors + num_junk)
    if os.path.exists(root) and (not os.path.isdir(root) or os.listdir(root)):
        raise InputError(f'{root} is not empty; the demo dataset needs a new or empty folder')
    for _, folder in SPLITS:
        os.makedirs(os.path.join(root, folder), exist_ok=True)
    rng = np.random.default_rng(seed)
    cameras = random_cameras(rng, num_cameras, height, width)
    writer = _Writer(root, rng)
    pids = rng.permutation(np.arange(1, num_train_ids + num_test_ids + 1))
    for n, pid in enumerate(pids):
        person, test = random_person(rng), n >= num_train_ids
        seen = rng.choice(num_cameras, size=rng.integers(2, num_cameras + 1), replace=False)
        for cam in sorted(seen):
            for folder, box in _shots(test, images_per_camera):
                passer_by = random_person(rng) if rng.random() < 1 / 6 else None
                image = render(rng, cameras[cam], height, width, person, passer_by)
                writer.save(folder, f'{pid:04d}', cam + 1, image, box)
    for identity, count, junk in (('0000', num_distractors, False), ('-1', num_junk, True)):
        for _ in range(count):
            cam = int(rng.integers(num_cameras))
            image = render(rng, cameras[cam], height, width, random_person(rng), junk=junk)
            writer.save('bounding_box_test', identity, cam + 1, image, int(rng.integers(1, 9)))
    csvs = build_market1501(root, root)
    return {'root': root, 'csvs': sorted(csvs), 'images': dict(writer.counts),
            'train_ids': num_train_ids, 'test_ids': num_test_ids, 'cameras': num_cameras}
