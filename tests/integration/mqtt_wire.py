"""MQTT packet framing for the test clients: the variable byte integer and whole packets."""


def varint(n):
    """n as an MQTT variable byte integer."""
    out = b""
    while True:
        b, n = n % 128, n // 128
        out += bytes([b | (128 if n else 0)])
        if not n:
            return out


def packet(first, body):
    """A packet: its first byte, the remaining length, the body."""
    return bytes([first]) + varint(len(body)) + body


def packets(buf):
    """Splits whole packets off buf: returns (list of packets, rest)."""
    out = []
    while True:
        n, mul, i = 0, 1, 1
        while i < len(buf) and i < 5:
            n += (buf[i] & 127) * mul
            mul *= 128
            i += 1
            if not buf[i - 1] & 128:
                break
        else:
            return out, buf
        if len(buf) < i + n:
            return out, buf
        out.append(buf[: i + n])
        buf = buf[i + n :]
