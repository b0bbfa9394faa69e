"""ICC colour profiles written byte by byte for the tests, and the colour arithmetic to check conversions with.

Pillow's ImageCms creates only sRGB, Lab and XYZ profiles; a Display P3 image
needs a Display P3 profile, so the tests write one: an ICC version 2 display
profile (header, tag table; description, white point, the primaries' XYZ
adapted to D50 with the Bradford transform, one tone curve per channel), the
form every matrix RGB profile takes.
"""

from __future__ import annotations

import struct

import numpy as np

SRGB_PRIMARIES = ((0.640, 0.330), (0.300, 0.600), (0.150, 0.060))
P3_PRIMARIES = ((0.680, 0.320), (0.265, 0.690), (0.150, 0.060))
D65 = (0.3127, 0.3290)
#: The profile connection space's white (ICC): D50 in XYZ.
D50_XYZ = np.array([0.9642, 1.0, 0.8249])
BRADFORD = np.array([[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]])


def xyz(xy: tuple[float, float]) -> np.ndarray:
    x, y = xy
    return np.array([x / y, 1.0, (1 - x - y) / y])


def rgb_to_xyz(primaries, white=D65) -> np.ndarray:
    """The 3x3 matrix from linear RGB to XYZ (white Y = 1)."""
    columns = np.stack([xyz(p) for p in primaries], axis=1)
    return columns * np.linalg.solve(columns, xyz(white))


def srgb_decode(v: np.ndarray) -> np.ndarray:
    """sRGB's transfer function (also Display P3's): encoded [0, 1] to linear."""
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def srgb_encode(v: np.ndarray) -> np.ndarray:
    v = np.clip(v, 0.0, 1.0)
    return np.where(v <= 0.0031308, v * 12.92, 1.055 * v ** (1 / 2.4) - 0.055)


def convert(pixels: np.ndarray, primaries, to_primaries=SRGB_PRIMARIES) -> np.ndarray:
    """8-bit values in one RGB space (sRGB's tone curve) as 8-bit values in another, clipped to its gamut."""
    m = np.linalg.solve(rgb_to_xyz(to_primaries), rgb_to_xyz(primaries))
    linear = srgb_decode(pixels.astype(np.float64) / 255.0) @ m.T
    return np.round(srgb_encode(linear) * 255.0).astype(np.uint8)


# ------------------------------------------------------------ ICC bytes
def _s15(values) -> bytes:
    return b"".join(struct.pack(">i", round(float(v) * 65536)) for v in values)


def _xyz_tag(values) -> bytes:
    return b"XYZ " + bytes(4) + _s15(values)


def _desc_tag(text: str) -> bytes:
    ascii_text = text.encode("ascii") + b"\0"
    return (b"desc" + bytes(4) + struct.pack(">I", len(ascii_text)) + ascii_text
            + bytes(8)  # no Unicode description
            + bytes(3) + bytes(67))  # no ScriptCode description


def _curve_tag(linear_of_encoded) -> bytes:
    table = np.round(linear_of_encoded(np.linspace(0.0, 1.0, 1024)) * 65535).astype(">u2")
    return b"curv" + bytes(4) + struct.pack(">I", table.size) + table.tobytes()


def _profile(space: bytes, tags: list[tuple[bytes, bytes]], device_class: bytes = b"mntr", pcs: bytes = b"XYZ ") -> bytes:
    table, data = [], b""
    offset = 128 + 4 + 12 * len(tags)
    for signature, body in tags:
        table.append(struct.pack(">4sII", signature, offset + len(data), len(body)))
        data += body + bytes(-len(body) % 4)
    size = offset + len(data)
    header = (struct.pack(">I", size) + bytes(4) + bytes([2, 0x10, 0, 0]) + device_class + space + pcs
              + bytes(12) + b"acsp" + bytes(4 + 4 + 4 + 4 + 8) + struct.pack(">I", 0) + _s15(D50_XYZ)
              + bytes(4 + 16 + 28))
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + b"".join(table) + data


def matrix_profile(description: str, primaries=P3_PRIMARIES, white=D65) -> bytes:
    """An RGB display profile: ``primaries`` and ``white`` (CIE xy), sRGB's tone curve."""
    adapt = np.linalg.solve(BRADFORD, np.diag((BRADFORD @ D50_XYZ) / (BRADFORD @ xyz(white))) @ BRADFORD)
    colorants = adapt @ rgb_to_xyz(primaries, white)
    curve = _curve_tag(srgb_decode)
    return _profile(b"RGB ", [(b"desc", _desc_tag(description)), (b"wtpt", _xyz_tag(D50_XYZ)),
                              (b"cprt", b"text" + bytes(4) + b"none\0"),
                              (b"rXYZ", _xyz_tag(colorants[:, 0])), (b"gXYZ", _xyz_tag(colorants[:, 1])),
                              (b"bXYZ", _xyz_tag(colorants[:, 2])),
                              (b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve)])


def grey_profile(description: str, gamma: float) -> bytes:
    """A grey display profile whose tone curve is a power ``gamma`` (1.0: linear light)."""
    return _profile(b"GRAY", [(b"desc", _desc_tag(description)), (b"wtpt", _xyz_tag(D50_XYZ)),
                              (b"cprt", b"text" + bytes(4) + b"none\0"),
                              (b"kTRC", _curve_tag(lambda v: v**gamma))])


def lab(rgb: np.ndarray) -> np.ndarray:
    """CIE Lab (D50, the ICC connection space) of 8-bit sRGB values."""
    adapt = np.linalg.solve(BRADFORD, np.diag((BRADFORD @ D50_XYZ) / (BRADFORD @ xyz(D65))) @ BRADFORD)
    t = (srgb_decode(rgb / 255.0) @ (adapt @ rgb_to_xyz(SRGB_PRIMARIES)).T) / D50_XYZ
    f = np.where(t > (6 / 29) ** 3, np.cbrt(t), t / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def cmyk_profile(description: str) -> bytes:
    """A CMYK printer profile: one 8-bit table (``mft1``, 2 points a channel) from ink to Lab.

    Each corner of the ink cube maps to the Lab of the sRGB colour
    ``255 (1 - c)(1 - k)``, ``255 (1 - m)(1 - k)``, ``255 (1 - y)(1 - k)``;
    LittleCMS interpolates between them.
    """
    corners = np.array([[c, m, y, k] for c in (0, 1) for m in (0, 1) for y in (0, 1) for k in (0, 1)], dtype=float)
    rgb = 255 * (1 - corners[:, :3]) * (1 - corners[:, 3:])
    encoded = lab(rgb) * np.array([255 / 100, 1, 1]) + np.array([0, 128, 128])  # lut8's Lab encoding
    ramp = np.arange(256, dtype=np.uint8).tobytes()
    table = (b"mft1" + bytes(4) + bytes([4, 3, 2, 0]) + _s15(np.eye(3).reshape(-1)) + ramp * 4
             + np.clip(np.round(encoded), 0, 255).astype(np.uint8).tobytes() + ramp * 3)
    return _profile(b"CMYK", [(b"desc", _desc_tag(description)), (b"wtpt", _xyz_tag(D50_XYZ)),
                              (b"cprt", b"text" + bytes(4) + b"none\0"), (b"A2B0", table)],
                    device_class=b"prtr", pcs=b"Lab ")
