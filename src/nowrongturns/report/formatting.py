"""How a share prints to a reader: never rounded to 0 % or 100 % unless it is exactly that.

>>> format_share(407 / 408), format_share(1.0), format_share(0.99996), format_share(1e-5)
('99.8%', '100%', '99.996%', '0.001%')
"""

MAX_DIGITS = 12  # beyond float64's use for a share of countable things


def format_share(share: float, digits: int = 1) -> str:
    """`share` (0 to 1) as a percentage with `digits` decimals, or as many more as it takes for
    a share strictly between 0 and 1 to print strictly between 0 % and 100 %."""
    if share in (0, 1):
        return f"{share:.0%}"
    for shown in range(digits, MAX_DIGITS):
        text = f"{share:.{shown}%}"
        if 0 < float(text[:-1]) < 100:
            return text
    return text
