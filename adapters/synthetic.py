"""The synthetic clothes-changing world: procedurally rendered person crops, no downloads.

Identity is what clothes do not change (height, build, skin tone, hair
colour and style, head shape); an outfit is upper and lower garments with
colours and patterns, and shoes; a camera is a background, an illumination
cast, blur and framing. Every person wears several outfits across cameras,
and clothes are loud while identity cues are subtle, so clothes are a
tempting shortcut, as in real clothes-changing benchmarks. Exact label maps
are stored as the dataset's masks.
"""
from __future__ import annotations

import click
import numpy as np

from reidkit.adapter import Adapter, DatasetLayout, EvalProtocol, ImageRecord, MaskLabels
from reidkit.errors import ReidkitError

LABELS = ["background", "hair", "face", "upper-clothes", "lower-clothes", "shoes", "arms", "legs"]
CLOTHING = ["upper-clothes", "lower-clothes", "shoes"]
L = {name: i for i, name in enumerate(LABELS)}
SKIN = np.array([[255, 224, 196], [234, 192, 160], [205, 155, 120], [170, 120, 85], [125, 85, 60], [90, 60, 40]], float)
HAIR = np.array([[20, 20, 20], [75, 45, 25], [130, 85, 45], [215, 185, 110], [165, 60, 30], [150, 150, 150]], float)
HAIR_STYLES = ("short", "long", "bun", "crop", "ponytail")
PATTERNS = ("solid", "hstripes", "vstripes", "checks", "twotone")
LOWER_TYPES = ("pants", "shorts", "skirt")


def _hsv_colour(rng, s_range=(0.45, 1.0), v_range=(0.35, 1.0)):
    import colorsys

    h, s, v = rng.random(), rng.uniform(*s_range), rng.uniform(*v_range)
    return np.array(colorsys.hsv_to_rgb(h, s, v)) * 255


class WorldSpec:
    """All random choices of the world, drawn from one seed (identity, outfit and camera tables)."""

    def __init__(self, ids, outfits, cameras, seed):
        self.ids, self.outfits, self.cameras, self.seed = ids, outfits, cameras, seed
        rng = np.random.default_rng([seed, 0])
        self.identity = [
            {
                "height": rng.uniform(0.78, 0.96),
                "build": rng.uniform(0.26, 0.40),
                "skin": SKIN[rng.integers(len(SKIN))] + rng.normal(0, 6, 3),
                "hair": HAIR[rng.integers(len(HAIR))] + rng.normal(0, 8, 3),
                "hair_style": HAIR_STYLES[rng.integers(len(HAIR_STYLES))],
                "head_aspect": rng.uniform(0.75, 1.2),
                "head_size": rng.uniform(0.10, 0.14),
                "leg_ratio": rng.uniform(0.44, 0.54),
            }
            for _ in range(ids)
        ]
        self.outfit = [
            [
                {
                    "upper": _hsv_colour(rng),
                    "upper2": _hsv_colour(rng),
                    "pattern": PATTERNS[rng.integers(len(PATTERNS))],
                    "stripe": rng.uniform(3.0, 7.0),
                    "long_sleeves": bool(rng.random() < 0.5),
                    "lower": _hsv_colour(rng, v_range=(0.2, 0.9)),
                    "lower_type": LOWER_TYPES[rng.integers(len(LOWER_TYPES))],
                    "shoes": _hsv_colour(rng, s_range=(0.0, 0.8), v_range=(0.05, 0.9)),
                }
                for _ in range(outfits)
            ]
            for _ in range(ids)
        ]
        self.camera = [
            {
                "bg_top": rng.uniform(40, 230, 3),
                "bg_bottom": rng.uniform(40, 230, 3),
                "gain": rng.uniform(0.75, 1.2, 3),
                "blur": rng.uniform(0.0, 1.1),
                "noise": rng.uniform(1.0, 6.0),
                "scale": rng.uniform(0.88, 1.0),
            }
            for _ in range(cameras)
        ]


def render(spec: WorldSpec, pid_index, outfit, camera, shot, height=128, width=64):
    """One crop and its label map, deterministic in (seed, person, outfit, camera, shot)."""
    import cv2

    ident, dress, cam = spec.identity[pid_index], spec.outfit[pid_index][outfit], spec.camera[camera]
    rng = np.random.default_rng([spec.seed, 1, pid_index, outfit, camera, shot])
    labels = np.zeros((height, width), np.uint8)
    scale = cam["scale"] * rng.uniform(0.95, 1.03)
    body_h = height * ident["height"] * scale
    cx = width / 2 + rng.normal(0, width * 0.04)
    top = height - 4 - body_h + rng.normal(0, 2)
    head_r = ident["head_size"] * body_h
    head_c = (cx, top + head_r)
    shoulder_y = top + 2.1 * head_r
    hip_y = top + body_h * (1 - ident["leg_ratio"])
    foot_y = top + body_h
    half = ident["build"] * width * scale / 2 * (1 + rng.normal(0, 0.03))
    stride = rng.uniform(-0.35, 0.35) * half  # walking pose
    arm_swing = rng.uniform(-0.25, 0.25) * half

    def poly(points, label):
        cv2.fillPoly(labels, [np.round(np.array(points)).astype(np.int32)], int(label))

    # legs (skin) then lower garment over them, shoes at the bottom
    leg_w = half * 0.42
    for side in (-1, 1):
        x_hip = cx + side * half * 0.45
        x_foot = x_hip + side * stride
        poly([(x_hip - leg_w, hip_y), (x_hip + leg_w, hip_y), (x_foot + leg_w * 0.8, foot_y), (x_foot - leg_w * 0.8, foot_y)], L["legs"])
        poly([(x_foot - leg_w, foot_y - 0.05 * body_h), (x_foot + leg_w * 1.4 * (1 if side > 0 else 0.6), foot_y - 0.05 * body_h),
              (x_foot + leg_w * 1.4, foot_y), (x_foot - leg_w, foot_y)], L["shoes"])
    lower_end = {"pants": foot_y - 0.05 * body_h, "shorts": hip_y + 0.45 * (foot_y - hip_y) * 0.6, "skirt": hip_y + 0.5 * (foot_y - hip_y)}[dress["lower_type"]]
    if dress["lower_type"] == "skirt":
        poly([(cx - half * 0.95, hip_y - 2), (cx + half * 0.95, hip_y - 2), (cx + half * 1.25, lower_end), (cx - half * 1.25, lower_end)], L["lower-clothes"])
    else:
        for side in (-1, 1):
            x_hip = cx + side * half * 0.45
            t = (lower_end - hip_y) / max(foot_y - hip_y, 1)
            x_end = x_hip + side * stride * t
            poly([(x_hip - leg_w * 1.15, hip_y - 2), (x_hip + leg_w * 1.15, hip_y - 2), (x_end + leg_w, lower_end), (x_end - leg_w, lower_end)], L["lower-clothes"])
        poly([(cx - half * 0.95, hip_y - 3), (cx + half * 0.95, hip_y - 3), (cx + half * 0.9, hip_y + 4), (cx - half * 0.9, hip_y + 4)], L["lower-clothes"])
    # arms (skin), torso (upper garment), sleeves
    arm_w = half * 0.28
    for side in (-1, 1):
        x_sh = cx + side * (half + arm_w * 0.6)
        x_hand = x_sh + side * arm_w * 0.5 + side * arm_swing
        poly([(x_sh - arm_w, shoulder_y + 2), (x_sh + arm_w, shoulder_y + 2), (x_hand + arm_w * 0.8, hip_y + 0.04 * body_h), (x_hand - arm_w * 0.8, hip_y + 0.04 * body_h)], L["arms"])
        sleeve_end = hip_y - 0.02 * body_h if dress["long_sleeves"] else shoulder_y + 0.35 * (hip_y - shoulder_y)
        t = (sleeve_end - shoulder_y) / max(hip_y - shoulder_y, 1)
        x_end = x_sh + (x_hand - x_sh) * t
        poly([(x_sh - arm_w * 1.1, shoulder_y), (x_sh + arm_w * 1.1, shoulder_y), (x_end + arm_w, sleeve_end), (x_end - arm_w, sleeve_end)], L["upper-clothes"])
    poly([(cx - half, shoulder_y), (cx + half, shoulder_y), (cx + half * 0.95, hip_y + 2), (cx - half * 0.95, hip_y + 2)], L["upper-clothes"])
    # neck, head and hair
    poly([(cx - head_r * 0.35, top + 1.6 * head_r), (cx + head_r * 0.35, top + 1.6 * head_r), (cx + head_r * 0.4, shoulder_y + 1), (cx - head_r * 0.4, shoulder_y + 1)], L["face"])
    axes = (max(int(round(head_r / ident["head_aspect"] ** 0.5)), 2), max(int(round(head_r * ident["head_aspect"] ** 0.5)), 2))
    centre = (int(round(head_c[0])), int(round(head_c[1])))
    style = ident["hair_style"]
    if style == "long":
        poly([(cx - axes[0] * 1.15, head_c[1]), (cx + axes[0] * 1.15, head_c[1]), (cx + axes[0] * 1.2, shoulder_y + 0.4 * (hip_y - shoulder_y)),
              (cx - axes[0] * 1.2, shoulder_y + 0.4 * (hip_y - shoulder_y))], L["hair"])
    cv2.ellipse(labels, centre, axes, 0, 0, 360, L["face"], -1)
    hair_axes = (axes[0] + 1, axes[1] + 1)
    if style == "crop":
        cv2.ellipse(labels, centre, hair_axes, 0, 180, 360, L["hair"], -1)
        cv2.ellipse(labels, centre, axes, 0, 180, 360, L["face"], -1)
        cv2.ellipse(labels, (centre[0], centre[1] - 1), (axes[0], max(axes[1] // 3, 1)), 0, 180, 360, L["hair"], -1)
    else:
        cv2.ellipse(labels, (centre[0], centre[1] - max(axes[1] // 5, 1)), hair_axes, 0, 180, 360, L["hair"], -1)
    if style == "bun":
        cv2.circle(labels, (centre[0], centre[1] - axes[1] - max(axes[0] // 3, 1)), max(axes[0] // 2, 2), L["hair"], -1)
    if style == "ponytail":
        poly([(cx + axes[0] * 0.6, head_c[1] - axes[1] * 0.3), (cx + axes[0] * 1.6, head_c[1] + axes[1] * 1.2),
              (cx + axes[0] * 1.1, head_c[1] + axes[1] * 1.4), (cx + axes[0] * 0.5, head_c[1] + axes[1] * 0.2)], L["hair"])
    if rng.random() < 0.5:  # facing the other way
        labels = labels[:, ::-1].copy()

    # paint: background gradient, skin, hair, garments with patterns
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    t = (yy / height)[..., None]
    img = cam["bg_top"] * (1 - t) + cam["bg_bottom"] * t
    img = img + rng.normal(0, 10, (height // 8 + 1, width // 8 + 1, 3)).repeat(8, 0).repeat(8, 1)[:height, :width]
    skin, hair = ident["skin"], ident["hair"]
    upper = np.broadcast_to(dress["upper"], img.shape).copy()
    period = dress["stripe"]
    phase = rng.uniform(0, period)
    if dress["pattern"] == "hstripes":
        sel = ((yy + phase) // period) % 2 == 1
    elif dress["pattern"] == "vstripes":
        sel = ((xx + phase) // period) % 2 == 1
    elif dress["pattern"] == "checks":
        sel = (((yy + phase) // period) + ((xx + phase) // period)) % 2 == 1
    elif dress["pattern"] == "twotone":
        sel = yy > shoulder_y + 0.5 * (hip_y - shoulder_y)
    else:
        sel = np.zeros_like(yy, bool)
    upper[sel] = dress["upper2"]
    paint = {L["hair"]: hair, L["face"]: skin, L["arms"]: skin * 0.96, L["legs"]: skin * 0.93, L["lower-clothes"]: dress["lower"], L["shoes"]: dress["shoes"]}
    for label, colour in paint.items():
        img[labels == label] = colour
    img[labels == L["upper-clothes"]] = upper[labels == L["upper-clothes"]]
    # shading across the body so shapes read as 3D, then the camera
    img = img * (1 - 0.12 * np.abs((xx - cx) / width))[..., None]
    img = img * cam["gain"] * rng.uniform(0.9, 1.1)
    if cam["blur"] > 0.2:
        img = cv2.GaussianBlur(img.astype(np.float32), (0, 0), cam["blur"])
    img = img + rng.normal(0, cam["noise"], img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), labels


class _RenderedPair:
    """Renders a crop once and hands out its image bytes and label-map bytes."""

    def __init__(self, spec, key):
        self.spec, self.key, self._mask = spec, key, None

    def image(self):
        from reidkit.store.imagecodec import encode_png

        img, labels = render(self.spec, *self.key)
        self._mask = encode_png(labels, rgb=False)
        return encode_png(img)

    def mask(self):
        if self._mask is None:
            self.image()
        mask, self._mask = self._mask, None
        return mask


class SyntheticWorld(Adapter):
    """The synthetic clothes-changing world (no --root): procedurally rendered persons.

    Half of the identities train, the other half are split into query (one
    image per person and outfit) and gallery (the rest). Protocols: standard,
    clothes-changing (cc) and same-clothes (sc).
    """

    name = "synthetic"
    summary = "Procedurally rendered clothes-changing world (no download)."
    needs_root = False
    options = [
        click.Option(["--ids"], type=click.IntRange(4), default=48, show_default=True, help="Persons (half train, half test)."),
        click.Option(["--outfits"], type=click.IntRange(2), default=3, show_default=True, help="Outfits per person."),
        click.Option(["--cameras"], type=click.IntRange(2), default=4, show_default=True, help="Cameras."),
        click.Option(["--shots"], type=click.IntRange(1), default=2, show_default=True, help="Images per person, outfit and camera."),
        click.Option(["--seed"], type=int, default=0, show_default=True, help="World seed: same seed, same world."),
        click.Option(["--height"], type=click.IntRange(32), default=128, show_default=True, help="Crop height in pixels."),
        click.Option(["--width"], type=click.IntRange(16), default=64, show_default=True, help="Crop width in pixels."),
    ]

    def scan(self, root, settings):
        if root is not None:
            raise ReidkitError("the synthetic world is generated, it takes no --root")
        s = {"ids": 48, "outfits": 3, "cameras": 4, "shots": 2, "seed": 0, "height": 128, "width": 64}
        s.update({k: v for k, v in settings.items() if v is not None})
        spec = WorldSpec(s["ids"], s["outfits"], s["cameras"], s["seed"])
        rng = np.random.default_rng([s["seed"], 2])
        order = rng.permutation(s["ids"])
        train_ids = set(order[: s["ids"] // 2].tolist())
        records = []
        for p in range(s["ids"]):
            pid = p + 1  # 1-based like the real benchmarks
            query_cams = rng.integers(s["cameras"], size=s["outfits"])
            for o in range(s["outfits"]):
                for c in range(s["cameras"]):
                    for shot in range(s["shots"]):
                        if p in train_ids:
                            split = "train"
                        else:
                            split = "query" if (c == query_cams[o] and shot == 0) else "gallery"
                        pair = _RenderedPair(spec, (p, o, c, shot, s["height"], s["width"]))
                        records.append(
                            ImageRecord(
                                path=f"{split}/{pid:04d}_o{o}_c{c}_s{shot}.png",
                                pid=pid,
                                camera=c,
                                clothes_key=f"{pid}_{o}",
                                splits=(split,),
                                load=pair.image,
                                load_mask=pair.mask,
                            )
                        )
        protocols = [
            EvalProtocol("standard", rule="standard", description="same person in another camera"),
            EvalProtocol("cc", rule="cc", description="clothes-changing: same person, another camera, other clothes"),
            EvalProtocol("sc", rule="sc", description="same-clothes: same person, another camera, same clothes"),
        ]
        return DatasetLayout(
            dataset="synthetic",
            records=records,
            protocols=protocols,
            settings=s,
            masks=MaskLabels("ground_truth", LABELS, CLOTHING),
        )
