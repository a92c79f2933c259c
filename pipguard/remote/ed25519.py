"""Ed25519 signatures (RFC 8032, section 5.1) in pure Python, so pipguard needs no crypto dependency.

Why ed25519 and not an HMAC: readers of a shared cache hold only public keys, so a reader (a pull-request
job, say) can check who wrote an entry but can never forge one. Why pure Python: pipguard's dependencies
are fixed, and one signature per upload and one verification per download cost milliseconds.

Written from the RFC's definitions: the twisted Edwards curve -x^2 + y^2 = 1 + d x^2 y^2 over
GF(2^255 - 19), points in extended coordinates (X, Y, Z, T) with x = X/Z, y = Y/Z, x*y = T/Z. Not constant
time: fine for signing a cache manifest on a build machine, not for a server signing for strangers.
"""

from __future__ import annotations

import hashlib

Point = tuple[int, int, int, int]

P = 2**255 - 19  # the field
L = 2**252 + 27742317777372353535851937790883648493  # the order of the base point
D = -121665 * pow(121666, -1, P) % P  # the curve constant d
SQRT_M1 = pow(2, (P - 1) // 4, P)  # a square root of -1 in the field
IDENTITY: Point = (0, 1, 1, 0)

SECRET_SIZE = 32
PUBLIC_SIZE = 32
SIGNATURE_SIZE = 64


def _add(p: Point, q: Point) -> Point:
    """Point addition (RFC 8032 5.1.4); also correct for doubling."""
    x1, y1, z1, t1 = p
    x2, y2, z2, t2 = q
    a = (y1 - x1) * (y2 - x2) % P
    b = (y1 + x1) * (y2 + x2) % P
    c = 2 * t1 * t2 * D % P
    d = 2 * z1 * z2 % P
    e, f, g, h = b - a, d - c, d + c, b + a
    return e * f % P, g * h % P, f * g % P, e * h % P


def _multiply(scalar: int, point: Point) -> Point:
    """``scalar`` times ``point``, by double-and-add."""
    result = IDENTITY
    while scalar > 0:
        if scalar & 1:
            result = _add(result, point)
        point = _add(point, point)
        scalar >>= 1
    return result


def _same(p: Point, q: Point) -> bool:
    """Whether two points in projective form are the same affine point."""
    x1, y1, z1, _ = p
    x2, y2, z2, _ = q
    return (x1 * z2 - x2 * z1) % P == 0 and (y1 * z2 - y2 * z1) % P == 0


def _recover_x(y: int, sign: int) -> int | None:
    """The x with the given low bit for ``y`` (RFC 8032 5.1.3), or None if there is none."""
    if y >= P:
        return None
    x2 = (y * y - 1) * pow(D * y * y + 1, -1, P) % P
    if x2 == 0:
        return None if sign else 0
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P != 0:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P != 0:
        return None
    if (x & 1) != sign:
        x = P - x
    return x


def _encode(point: Point) -> bytes:
    """32 bytes: y, little-endian, with the low bit of x in the top bit."""
    x, y, z, _ = point
    z_inverse = pow(z, -1, P)
    x, y = x * z_inverse % P, y * z_inverse % P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def _decode(data: bytes) -> Point | None:
    """The point ``data`` encodes, or None for an encoding that is not a point on the curve."""
    if len(data) != 32:
        return None
    y = int.from_bytes(data, "little")
    sign, y = y >> 255, y & ((1 << 255) - 1)
    x = _recover_x(y, sign)
    if x is None:
        return None
    return x, y, 1, x * y % P


_BASE_Y = 4 * pow(5, -1, P) % P
_BASE_X = _recover_x(_BASE_Y, 0)
assert _BASE_X is not None
BASE: Point = (_BASE_X, _BASE_Y, 1, _BASE_X * _BASE_Y % P)


def _hash_scalar(*parts: bytes) -> int:
    return int.from_bytes(hashlib.sha512(b"".join(parts)).digest(), "little") % L


def _expand(secret: bytes) -> tuple[int, bytes]:
    """The secret scalar (pruned as 5.1.5 says) and the prefix that derives each signature's nonce."""
    if len(secret) != SECRET_SIZE:
        raise ValueError(f"an ed25519 private key is {SECRET_SIZE} bytes, not {len(secret)}")
    digest = hashlib.sha512(secret).digest()
    scalar = int.from_bytes(digest[:32], "little")
    scalar &= (1 << 254) - 8
    scalar |= 1 << 254
    return scalar, digest[32:]


def public_key(secret: bytes) -> bytes:
    """The 32-byte public key of a 32-byte private key (RFC 8032 5.1.5)."""
    scalar, _prefix = _expand(secret)
    return _encode(_multiply(scalar, BASE))


def sign(secret: bytes, message: bytes) -> bytes:
    """The 64-byte signature of ``message`` (RFC 8032 5.1.6): deterministic, no randomness needed."""
    scalar, prefix = _expand(secret)
    public = _encode(_multiply(scalar, BASE))
    nonce = _hash_scalar(prefix, message)
    r = _encode(_multiply(nonce, BASE))
    s = (nonce + _hash_scalar(r, public, message) * scalar) % L
    return r + s.to_bytes(32, "little")


def verify(public: bytes, message: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is ``public``'s signature of ``message`` (RFC 8032 5.1.7, [S]B = R + [k]A)."""
    if len(public) != PUBLIC_SIZE or len(signature) != SIGNATURE_SIZE:
        return False
    a = _decode(public)
    r = _decode(signature[:32])
    if a is None or r is None:
        return False
    s = int.from_bytes(signature[32:], "little")
    if s >= L:
        return False
    k = _hash_scalar(signature[:32], public, message)
    return _same(_multiply(s, BASE), _add(r, _multiply(k, a)))
