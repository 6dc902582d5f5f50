"""Find and redact personal data in text: e-mail, phone, payment card, IBAN, US SSN, IP address, date of birth.

Compiled regular expressions find candidates; validators keep only the real ones:

| type    | token     | what is kept                                                                      |
|---------|-----------|-----------------------------------------------------------------------------------|
| `email` | `[EMAIL]` | local@domain.tld, no dot at either end of the local part, no `..`                 |
| `phone` | `[PHONE]` | `+CC …` / `00CC …` with 8–15 digits; North American (NXX) NXX-XXXX; national     |
|         |           | numbers with a trunk 0 and 9–11 digits in groups; any 7–15 digits after "phone",  |
|         |           | "tel", "mobile", "call me at" … Bare amounts, years and ids are not phones.       |
| `card`  | `[CARD]`  | 13–19 digits (groups of spaces or dashes) with a card-network prefix that pass    |
|         |           | the Luhn check: a 16-digit order number that fails Luhn is not a card             |
| `iban`  | `[IBAN]`  | a known country, that country's length, and the ISO 7064 mod-97 check = 1         |
| `ssn`   | `[SSN]`   | AAA-GG-SSSS (or spaced / bare after "SSN", "social security") with area not 000,  |
|         |           | 666 or 9xx, group not 00, serial not 0000                                         |
| `ip`    | `[IP]`    | IPv4 with octets 0–255 (no leading zeros, not after "version"/"v"); IPv6 as the   |
|         |           | standard library parses it                                                        |
| `dob`   | `[DOB]`   | a valid calendar date after "born (on)", "date of birth", "DOB", "birthday"; the  |
|         |           | context words stay, the date goes: "born on [DOB]"                                |

Names and postal addresses are not found: they need a language model, not a pattern. Where two finds overlap,
the stronger evidence wins (in the order e-mail, IBAN, card, SSN, date of birth, IP, phone).

`scan(texts)` returns counts by type and rows affected, where each find is, and how many rows could hold each
type at all (`Scan.could_hold`: rows with an @ for e-mail, with a run of 7+ digits for a card, …, the gates
below); it never keeps the matched text. It reads the texts in batches: cheap gates (literal searches and one numpy pass, see `_Gates`) pick the
rows a pattern can match at all, and each pattern then runs once over those rows joined by NUL. 100k rows of
credit-application text (26 M characters) take about 1.5 s on one core.

**Other families: call `redact(text)` before any dataset text leaves the process** (counterfactual examples,
explanation snippets, drift samples, CSV cells): it replaces every find with its token. `redact_many(texts)`
does the same for a list, as fast as `scan`.
"""

from __future__ import annotations

import bisect
import datetime as dt
import ipaddress
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

TYPES = ("email", "phone", "card", "iban", "ssn", "ip", "dob")
TOKENS = {t: f"[{t.upper()}]" for t in TYPES}
LABELS = {"email": "E-mail address", "phone": "Phone number", "card": "Payment card number", "iban": "IBAN",
          "ssn": "US Social Security number", "ip": "IP address", "dob": "Date of birth"}
# Which find wins an overlap: the more specific the validation, the earlier.
PRIORITY = ("email", "iban", "card", "ssn", "dob", "ip", "phone")

_SEP = "\x00"  # joins the rows a pattern reads; no pattern can match it, so no find spans two rows

# ---------------------------------------------------------------- validators (public: tested on their own)


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod-10) check over a string of digits: double every second digit from the right."""
    if not (digits.isascii() and digits.isdigit()):
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


# ISO 13616 registry: country code -> IBAN length.
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27, "BR": 29,
    "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28, "EE": 20, "EG": 29,
    "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28,
    "HN": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
    "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29,
    "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24,
    "SM": 27, "SO": 23, "ST": 25, "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
    "YE": 30,
}


def iban_valid(iban: str) -> bool:
    """ISO 13616: known country, that country's length, letters and digits only, mod-97 of the rearranged
    number (first four characters moved to the end, letters as 10..35) equal to 1. Spaces are ignored."""
    s = iban.replace(" ", "").upper()
    if len(s) < 5 or not s.isascii() or not s.isalnum() or IBAN_LENGTHS.get(s[:2]) != len(s):
        return False
    if not s[2:4].isdigit():
        return False
    rearranged = s[4:] + s[:4]
    remainder = 0
    for ch in rearranged:  # digit by digit (letters give two), so no big integers are needed
        for d in (ch if ch.isdigit() else str(ord(ch) - 55)):
            remainder = (remainder * 10 + ord(d) - 48) % 97
    return remainder == 1


_SSN_SHAPE = re.compile(r"(\d{3})([- ]?)(\d{2})\2(\d{4})", re.ASCII)


def ssn_valid(ssn: str) -> bool:
    """US SSN rules (SSA, since 2011 randomization): 9 digits; area not 000, 666 or 900–999; group not 00;
    serial not 0000. Written AAA-GG-SSSS, AAA GG SSSS or as nine digits."""
    m = _SSN_SHAPE.fullmatch(ssn.strip())
    if m is None:
        return False
    area, group, serial = m.group(1), m.group(3), m.group(4)
    return area != "000" and area != "666" and area[0] != "9" and group != "00" and serial != "0000"


def _card_prefix_ok(d: str) -> bool:
    """Issuer prefixes of the card networks (Visa 4; Mastercard 51–55, 2221–2720; Amex 34, 37; Diners 30, 36,
    38, 39; JCB 35; Discover and UnionPay 6; Maestro 50, 56–69), with their lengths."""
    n = len(d)
    if d[0] == "4":
        return n in (13, 16, 19)
    if d[0] == "5":
        return (d[1] in "12345" and n == 16) or (d[1] in "06789" and 12 <= n <= 19)
    if d[0] == "2":
        return 2221 <= int(d[:4]) <= 2720 and n == 16
    if d[0] == "3":
        if d[:2] in ("34", "37"):
            return n == 15
        if d[:2] == "35":
            return 16 <= n <= 19
        return d[:2] in ("30", "36", "38", "39") and 14 <= n <= 19
    if d[0] == "6":
        return 16 <= n <= 19
    return False


def card_valid(number: str) -> bool:
    """13–19 digits (spaces and dashes ignored), a card-network prefix, not one repeated digit, Luhn-valid."""
    d = number.replace(" ", "").replace("-", "")
    return (13 <= len(d) <= 19 and d.isascii() and d.isdigit() and len(set(d)) > 1 and _card_prefix_ok(d) and luhn_valid(d))


def ipv4_valid(text: str) -> bool:
    parts = text.split(".")
    return len(parts) == 4 and all(p.isdigit() and len(p) <= 3 and int(p) <= 255 and (p == "0" or p[0] != "0")
                                   for p in parts)


def ipv6_valid(text: str) -> bool:
    if text.count(":") < 2 or text.strip(":") == "":
        return False
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------- patterns

_MONTHS = {m: i + 1 for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct",
                                            "nov", "dec"))}
_MONTH = (r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sept?(?:ember)?"
          r"|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)")

EMAIL_RE = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
    r"[A-Za-z]{2,24}(?![\w-]|\.[A-Za-z0-9])", re.ASCII)

# International: "+" or "00", a country code 1-9.., then digits in groups with single separators.
PHONE_INTL_RE = re.compile(  # possessive \d*+ and \d++: no backtracking through long digit runs
    r"(?<![\w+])(?:\+|(?<!\d)00)[1-9]\d*+(?:[ .\-/]?\(?\d++\)?){0,8}(?![\w-]|[.,]\d)", re.ASCII)
# North America: (NPA) NXX-XXXX, NPA-NXX-XXXX, NPA.NXX.XXXX, optional leading 1.
PHONE_NANP_RE = re.compile(
    r"(?<![\w+.\-])(?:1[ .\-])?(?:\([2-9]\d\d\)[ ]?[2-9]\d\d[ .\-]\d{4}|[2-9]\d\d([.\- ])[2-9]\d\d\1\d{4})"
    r"(?![\w-]|[.,]\d)", re.ASCII)
# National numbers with a trunk prefix 0, in groups: 020 7946 0958, 06 12 34 56 78, 030/901820.
PHONE_NATIONAL_RE = re.compile(
    r"(?<![\w+.\-/(])(?:0\d{1,4}|\(0\d{1,4}\))(?:(?:[ \-]\d{2,6}){1,4}|/\d{4,9})(?![\w-]|[.,/]\d)", re.ASCII)
# Any 7-15 digit number right after a phone word.
PHONE_CONTEXT_RE = re.compile(
    r"\b(?:phone|tel(?:ephone)?|mobile|cell(?:phone)?|fax|whats ?app|contact number|call (?:me )?(?:at|on))\b"
    r"[^\d\x00\n+]{0,12}(\+?\(?\d[\d() .\-]{5,22}\d)(?![\w-]|[.,]\d)", re.IGNORECASE | re.ASCII)

CARD_RE = re.compile(r"(?<![\w\-.])\d(?:[ \-]?\d){11,22}(?![\w\-]|[.,]\d)", re.ASCII)
IBAN_RE = re.compile(r"(?<![A-Za-z0-9\-])[A-Za-z]{2}\d{2}(?:[ \-]?[A-Za-z0-9]){10,32}", re.ASCII)
SSN_RE = re.compile(r"(?<![\w\-.])\d{3}-\d{2}-\d{4}(?![\w\-]|[.,]\d)", re.ASCII)
SSN_CONTEXT_RE = re.compile(
    r"\b(?:ssn|ss#|ss no|soc\.? ?sec\.?(?: no\.?)?|social security(?: number| no\.?| #)?)(?![a-z])"
    r"[^\d\x00\n]{0,12}(\d{3}([ \-]?)\d{2}\2\d{4})(?![\w\-]|[.,]\d)", re.IGNORECASE | re.ASCII)
IPV4_RE = re.compile(r"(?<![\w.])(?<!version )(\d{1,3}(?:\.\d{1,3}){3})(?!\w|\.\d)", re.IGNORECASE | re.ASCII)
IPV6_RE = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|\d{1,3}(?:\.\d{1,3}){3})?"
                     r"(?![\w:]|\.[\w:])", re.ASCII)
_DATE = (r"(?P<d1>\d{1,2})[/.\-](?P<d2>\d{1,2})[/.\-](?P<d3>\d{4}|\d{2})"
         r"|(?P<iy>\d{4})(?P<isep>[\-./])(?P<im>\d{1,2})(?P=isep)(?P<id>\d{1,2})"
         rf"|(?P<td>\d{{1,2}})(?:st|nd|rd|th)?(?: of)?[ \-](?P<tm>{_MONTH})\.?,?[ \-](?P<ty>\d{{4}})"
         rf"|(?P<um>{_MONTH})\.? (?P<ud>\d{{1,2}})(?:st|nd|rd|th)?,? (?P<uy>\d{{4}})")
DOB_RE = re.compile(
    r"\b(?:born(?: on)?|date of birth|birth ?date|birthday|d\.o\.b\.?|dob)(?![a-z])[ \t]*(?:[:=\-]|is|was|of)?"
    rf"[ \t]*(?P<date>{_DATE})(?![\w/.\-]\d|\d)", re.IGNORECASE | re.ASCII)


# ---------------------------------------------------------------- acceptors: match -> span or None

Span = tuple[int, int]


def _email(m: re.Match) -> Span | None:
    local = m.group().split("@", 1)[0]
    if ".." in m.group() or local.endswith(".") or local.startswith("."):
        return None
    return m.span()


def _digits(s: str) -> str:
    return "".join(ch for ch in s if ch.isdigit())


def _separators_ok(s: str) -> bool:
    """No two separators in a row (') ' excepted) and balanced parentheses."""
    if s.count("(") != s.count(")") or "()" in s:
        return False
    return re.search(r"[ .\-/]{2,}|\)[.\-/]|[ .\-/]\)", s) is None


def _phone_intl(m: re.Match) -> Span | None:
    s = m.group()
    d = _digits(s[2:] if s.startswith("00") else s)
    if not 8 <= len(d) <= 15 or not _separators_ok(s):
        return None
    return m.span()


def _phone_nanp(m: re.Match) -> Span | None:
    return m.span()


def _phone_national(m: re.Match) -> Span | None:
    if re.fullmatch(r"\d{3}-\d{2}-\d{4}", m.group()):  # the shape of an SSN (an invalid one, or it had won)
        return None
    return m.span() if 9 <= len(_digits(m.group())) <= 11 else None


def _phone_context(m: re.Match) -> Span | None:
    s = m.group(1)
    if not 7 <= len(_digits(s)) <= 15 or not _separators_ok(s):
        return None
    return m.span(1)


def _card(m: re.Match) -> Span | None:
    """The longest run of whole digit groups (13–19 digits) inside the candidate that is a valid card number:
    a greedy pattern may have swallowed a neighbouring number ("4111 1111 1111 1111 2025")."""
    s = m.group()
    groups = [(g.start(), g.end()) for g in re.finditer(r"\d+", s)]
    if len({ch for ch in s if not ch.isdigit()}) > 1:  # mixed separators: not one number
        return None
    best: Span | None = None
    for i in range(len(groups)):
        for j in range(len(groups), i, -1):
            a, b = groups[i][0], groups[j - 1][1]
            if best is not None and b - a <= best[1] - best[0]:
                break
            if card_valid(s[a:b]):
                best = (a, b)
                break
    if best is None:
        return None
    return m.start() + best[0], m.start() + best[1]


def _iban(m: re.Match) -> Span | None:
    s = m.group()
    length = IBAN_LENGTHS.get(s[:2].upper())
    if length is None:
        return None
    taken, end = 0, 0
    for i, ch in enumerate(s):  # the first `length` characters, separators not counted
        if ch not in " -":
            taken += 1
            if taken == length:
                end = i + 1
                break
    if taken < length:
        return None
    rest = s[end:]
    if rest[:1].isalnum():  # the run goes on without a space: a longer token, not this IBAN
        return None
    body = s[:end]
    if " " in body and "-" in body:  # mixed separators: not one number
        return None
    return (m.start(), m.start() + end) if iban_valid(body.replace("-", "")) else None


def _ssn(m: re.Match) -> Span | None:
    return m.span() if ssn_valid(m.group()) else None


def _ssn_context(m: re.Match) -> Span | None:
    return m.span(1) if ssn_valid(m.group(1)) else None


def _ipv4(m: re.Match) -> Span | None:
    s = m.group(1)
    before = m.string[max(0, m.start() - 1): m.start()]
    if before in ("v", "V") or not ipv4_valid(s):
        return None
    return m.span(1)


def _ipv6(m: re.Match) -> Span | None:
    return m.span() if ipv6_valid(m.group()) else None


def _year(y: str) -> int:
    v = int(y)
    return v if len(y) == 4 else (1900 + v if v > dt.date.today().year % 100 else 2000 + v)


def _date_ok(y: int, mo: int, d: int) -> bool:
    if not 1900 <= y <= dt.date.today().year:
        return False
    try:
        dt.date(y, mo, d)
    except ValueError:
        return False
    return True


def _dob(m: re.Match) -> Span | None:
    g = m.groupdict()
    if g["d1"]:
        y = _year(g["d3"])
        a, b = int(g["d1"]), int(g["d2"])
        ok = _date_ok(y, b, a) or _date_ok(y, a, b)  # day-month-year or month-day-year
    elif g["iy"]:
        ok = _date_ok(int(g["iy"]), int(g["im"]), int(g["id"]))
    elif g["td"]:
        ok = _date_ok(int(g["ty"]), _MONTHS[g["tm"][:3].lower()], int(g["td"]))
    else:
        ok = _date_ok(int(g["uy"]), _MONTHS[g["um"][:3].lower()], int(g["ud"]))
    return m.span("date") if ok else None


@dataclass(frozen=True)
class Rule:
    kind: str
    pattern: re.Pattern
    accept: Callable[[re.Match], Span | None]
    gate: str  # a cheap necessary condition that picks the rows the pattern reads (see `_Gates`)


RULES: tuple[Rule, ...] = (
    Rule("email", EMAIL_RE, _email, "at"),
    Rule("iban", IBAN_RE, _iban, "iban"),
    Rule("card", CARD_RE, _card, "digits"),
    Rule("ssn", SSN_RE, _ssn, "ssn"),
    Rule("ssn", SSN_CONTEXT_RE, _ssn_context, "ssn_words"),
    Rule("dob", DOB_RE, _dob, "dob_words"),
    Rule("ip", IPV4_RE, _ipv4, "ipv4"),
    Rule("ip", IPV6_RE, _ipv6, "ipv6"),
    Rule("phone", PHONE_INTL_RE, _phone_intl, "digits"),
    Rule("phone", PHONE_NANP_RE, _phone_nanp, "digits"),
    Rule("phone", PHONE_NATIONAL_RE, _phone_national, "digits"),
    Rule("phone", PHONE_CONTEXT_RE, _phone_context, "phone_words"),
)
assert [r.kind for r in RULES] == sorted((r.kind for r in RULES), key=PRIORITY.index)

# ---------------------------------------------------------------- gates: which rows can hold a find at all
#
# Python's regex engine is fast when a pattern starts with a literal and slow when it must try a lookbehind at
# every position. So each rule has a gate: a necessary condition that literal searches (over the UTF-8 bytes,
# over their lower case, or over their "shape", where every ASCII digit is 0 and every ASCII letter a) or one
# numpy pass can test for a whole batch. The full pattern then reads only the rows that pass. A gate never
# changes what is found (the tests compare gated and ungated finds); it only skips rows that cannot match.

_SHAPE = bytes.maketrans(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
                         b"0" * 10 + b"a" * 52)
_NUMBERISH = np.zeros(256, dtype=bool)  # what a digit-gated find is made of: digits and + ( ) . - / space
_NUMBERISH[list(b"0+(). -/")] = True
# Every digit-gated find holds at least this many digits (a phone number; cards and SSNs hold more): the
# default of the PII checks' `min_digits` (audit/checks/privacy.py). A check may raise it: a phone or card find
# with fewer digits is then not a find (a 7-digit local number, also after a phone word), and a run of fewer
# digits no row that could hold one; no pattern finds fewer than 7, so a lower value would find nothing more.
# Redaction (`redact`, `snippet`) always uses the default.
MIN_DIGITS = 7


def _lit(*words: bytes) -> tuple[re.Pattern, ...]:
    return tuple(re.compile(re.escape(w)) for w in words)


_GATES: dict[str, tuple[str, tuple[re.Pattern, ...]]] = {  # name -> (buffer, patterns: any may match)
    "at": ("raw", _lit(b"@")),
    "iban": ("shape", _lit(b"aa00")),
    "ssn": ("shape", _lit(b"000-00-0000")),
    "ssn_words": ("lower", _lit(b"ssn", b"ss#", b"ss no", b"soc")),
    "dob_words": ("lower", _lit(b"born", b"birth", b"dob", b"d.o.b")),
    "phone_words": ("lower", _lit(b"phone", b"tel", b"mobile", b"cell", b"fax", b"whats", b"contact number",
                                  b"call ")),
    "ipv4": ("shape", (re.compile(rb"\.0{1,3}\."),)),
    "ipv6": ("raw", (re.compile(rb":[0-9A-Fa-f]{0,4}:"),)),
}


# What a row must hold before a type's patterns can match it at all (the union of its rules' gates): a row
# without it cannot hold that type, so a scan that finds none in such rows has not looked at anything.
CANDIDATES = {
    "email": "rows with an @",
    "phone": "rows with 7 or more digits in a run (separators allowed), or a phone word (phone, tel, mobile, …)",
    "card": "rows with 7 or more digits in a run (separators allowed)",
    "iban": "rows with two letters followed by two digits",
    "ssn": "rows with the shape 000-00-0000, or an SSN word (ssn, ss#, soc…)",
    "ip": "rows with digits between two dots (1.2.3), or two colons with at most 4 hex digits between",
    "dob": "rows with a birth word (born, birth, dob)",
}


def candidates(min_digits: int = MIN_DIGITS) -> dict[str, str]:
    """CANDIDATES, with the digit rule that `min_digits` sets."""
    if min_digits == MIN_DIGITS:
        return dict(CANDIDATES)
    return {t: v.replace(f"{MIN_DIGITS} or more digits", f"{min_digits} or more digits") for t, v in CANDIDATES.items()}


def _numberish(s: str, min_digits: int = MIN_DIGITS) -> bool:
    """True when `s` is made only of digits and + ( ) . - / space, with at least `min_digits` digits."""
    return (sum("0" <= ch <= "9" for ch in s) >= min_digits
            and all("0" <= ch <= "9" or ch in "+(). -/" for ch in s))


class _Gates:
    """The rows of one batch that pass each gate, computed on first use."""

    def __init__(self, rows: list[str], min_digits: int = MIN_DIGITS):
        self.min_digits = min_digits
        enc = [r.encode("utf-8", "surrogatepass") for r in rows]
        self.raw = b"\x00".join(enc)
        lengths = np.fromiter((len(e) + 1 for e in enc), dtype=np.int64, count=len(enc))
        self.starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if len(enc) else np.zeros(0, np.int64)
        self._buffers: dict[str, bytes] = {"raw": self.raw}
        self._rows: dict[str, np.ndarray] = {}

    def _buffer(self, name: str) -> bytes:
        if name not in self._buffers:
            self._buffers[name] = self.raw.lower() if name == "lower" else self.raw.translate(_SHAPE)
        return self._buffers[name]

    def _to_rows(self, positions: np.ndarray) -> np.ndarray:
        return np.unique(np.searchsorted(self.starts, positions, side="right") - 1)

    def rows(self, gate: str) -> np.ndarray:
        if gate not in self._rows:
            if gate == "digits":  # a run of digits and separators with at least min_digits digits
                shape = np.frombuffer(self._buffer("shape"), dtype=np.uint8)
                digit = shape == ord("0")
                run = np.cumsum(~_NUMBERISH[shape])  # one id per run of numberish characters
                enough = (np.bincount(run[digit], minlength=int(run[-1]) + 1 if len(run) else 1)
                          >= self.min_digits)
                self._rows[gate] = self._to_rows(np.flatnonzero(digit & enough[run]))
            else:
                buf = self._buffer(_GATES[gate][0])
                pos = [m.start() for rx in _GATES[gate][1] for m in rx.finditer(buf)]
                self._rows[gate] = self._to_rows(np.array(pos, dtype=np.int64))
        return self._rows[gate]


# ---------------------------------------------------------------- finding


@dataclass(frozen=True)
class Find:
    """One piece of personal data: its type and where it is ([start, end) in its row). Never its text."""

    kind: str
    row: int
    start: int
    end: int


def check_types(types: Iterable[str] | None) -> tuple[str, ...]:
    """The types asked for, lower-cased and checked; all of them for None or an empty list."""
    if types is None:
        return TYPES
    if isinstance(types, str):
        types = [types]
    chosen = tuple(dict.fromkeys(str(t).strip().lower() for t in types))
    unknown = [t for t in chosen if t not in TYPES]
    if unknown:
        raise ValueError(f"unknown PII type {unknown[0]!r}; the types are {', '.join(TYPES)}")
    return chosen or TYPES


def _accept(rule: Rule, m: re.Match, min_digits: int = MIN_DIGITS) -> Span | None:
    span = rule.accept(m)
    if span is not None and rule.gate == "digits" and not _numberish(m.string[span[0]:span[1]], min_digits):
        return None  # keeps the digit gate a necessary condition, whatever a pattern allows
    if (span is not None and min_digits != MIN_DIGITS and rule.kind in ("phone", "card")
            and len(_digits(m.string[span[0]:span[1]])) < min_digits):
        return None  # a raised `min_digits` holds for a phone number after a phone word too
    return span


_BATCH = 20_000


def _batch_finds(rows: list[str], types: tuple[str, ...], gated: bool,
                 candidates: np.ndarray | None = None, min_digits: int = MIN_DIGITS) -> list[list[Find]]:
    """Validated, non-overlapping finds per row (rows hold no NUL), each row's sorted by start. `candidates`, a
    (len(rows), len(TYPES)) bool array, is set where a row passes a gate of the type (could hold it)."""
    gates = _Gates(rows, min_digits) if gated else None
    accepted: dict[int, tuple[list[int], list[int], list[str]]] = {}  # row -> starts, ends, kinds (sorted)
    everything = np.arange(len(rows))
    for rule in RULES:
        if rule.kind not in types:
            continue
        sel = gates.rows(rule.gate) if gates is not None else everything
        if candidates is not None:
            candidates[sel, TYPES.index(rule.kind)] = True
        if not len(sel):
            continue
        picked = [rows[i] for i in sel]
        corpus = _SEP.join(picked)
        offsets = np.concatenate([[0], np.cumsum([len(t) + 1 for t in picked])[:-1]]).tolist()
        for m in rule.pattern.finditer(corpus):
            span = _accept(rule, m, min_digits)
            if span is None:
                continue
            j = bisect.bisect_right(offsets, span[0]) - 1
            row, a, b = int(sel[j]), span[0] - offsets[j], span[1] - offsets[j]
            if b > len(rows[row]):
                continue  # spans two rows: cannot happen, as no pattern matches NUL
            starts, ends, kinds = accepted.setdefault(row, ([], [], []))
            i = bisect.bisect_left(starts, a)
            if (i > 0 and ends[i - 1] > a) or (i < len(starts) and starts[i] < b):
                continue  # overlaps a stronger find
            starts.insert(i, a)
            ends.insert(i, b)
            kinds.insert(i, rule.kind)
    out: list[list[Find]] = [[] for _ in rows]
    for row, (starts, ends, kinds) in accepted.items():
        out[row] = [Find(k, row, a, b) for a, b, k in zip(starts, ends, kinds)]
    return out


def find_all(texts: Sequence[str], types: Iterable[str] | None = None, *, gated: bool = True,
             candidates: np.ndarray | None = None, min_digits: int = MIN_DIGITS) -> list[list[Find]]:
    """Finds per text (each `Find.row` is the text's index). `gated=False` runs every pattern over every text:
    slower, the same result; it exists to test the gates. `candidates`: see `_batch_finds` (len(texts) rows).
    `min_digits`: the fewest digits a digit-gated find holds (MIN_DIGITS)."""
    chosen = check_types(types)
    clean = [str(t).replace(_SEP, " ") for t in texts]
    out: list[list[Find]] = []
    for lo in range(0, len(clean), _BATCH):
        part = candidates[lo: lo + _BATCH] if candidates is not None else None  # a view: set in place
        for finds in _batch_finds(clean[lo: lo + _BATCH], chosen, gated, part, int(min_digits)):
            out.append([Find(f.kind, f.row + lo, f.start, f.end) for f in finds] if lo else finds)
    return out


def find(text: str, types: Iterable[str] | None = None) -> list[Find]:
    """Every piece of personal data in one text, in order (row is 0)."""
    return find_all([text], types)[0]


def _replace(text: str, finds: list[Find]) -> str:
    out, last = [], 0
    for f in finds:
        out.append(text[last:f.start])
        out.append(TOKENS[f.kind])
        last = f.end
    out.append(text[last:])
    return "".join(out)


def redact(text: str, types: Iterable[str] | None = None) -> str:
    """`text` with every find replaced by its token: "mail me at [EMAIL]". Safe on any string."""
    text = str(text)
    return _replace(text, find(text, types))


def redact_many(texts: Sequence[str], types: Iterable[str] | None = None) -> list[str]:
    """`redact` over a list, as fast as `scan`."""
    texts = [str(t) for t in texts]
    return [_replace(t, f) if f else t for t, f in zip(texts, find_all(texts, types))]


@dataclass
class Scan:
    """Personal data in a list of texts: counts by type and which rows hold which type (no text)."""

    n_rows: int
    types: tuple[str, ...]
    finds: list[Find] = field(default_factory=list)
    flags: np.ndarray = field(default_factory=lambda: np.zeros((0, len(TYPES)), dtype=bool))  # (n_rows, TYPES)
    seconds: float = 0.0
    # (n_rows, TYPES): rows that could hold each type at all (see CANDIDATES); every flagged row is one of them
    candidates: np.ndarray = field(default_factory=lambda: np.zeros((0, len(TYPES)), dtype=bool))

    @property
    def could_hold(self) -> dict[str, int]:
        """Rows that could hold each type at all (pass a cheap necessary condition, see CANDIDATES)."""
        return {t: int(self.candidates[:, TYPES.index(t)].sum()) for t in self.types}

    @property
    def could_hold_any(self) -> int:
        return int(self.candidates[:, [TYPES.index(t) for t in self.types]].any(axis=1).sum())

    @property
    def counts(self) -> dict[str, int]:
        """Finds per type."""
        out = dict.fromkeys(self.types, 0)
        for f in self.finds:
            out[f.kind] += 1
        return out

    @property
    def rows(self) -> dict[str, int]:
        """Rows holding at least one find of each type."""
        return {t: int(self.flags[:, TYPES.index(t)].sum()) for t in self.types}

    @property
    def any_row(self) -> np.ndarray:
        """(n_rows,) True where a row holds any find of the scanned types."""
        return self.flags[:, [TYPES.index(t) for t in self.types]].any(axis=1)

    @property
    def rows_any(self) -> int:
        return int(self.any_row.sum())


def scan(texts: Sequence[str], types: Iterable[str] | None = None, *, min_digits: int = MIN_DIGITS) -> Scan:
    """Scan every text: counts by type, rows affected, and where each find is (never its text). `min_digits`:
    the fewest digits a phone or card find (and a row that could hold one) has: MIN_DIGITS unless a check's
    rule raises it."""
    import time

    t0 = time.perf_counter()
    chosen = check_types(types)
    candidates = np.zeros((len(texts), len(TYPES)), dtype=bool)
    per_row = find_all(texts, chosen, candidates=candidates, min_digits=min_digits)
    flags = np.zeros((len(per_row), len(TYPES)), dtype=bool)
    finds = [f for row in per_row for f in row]
    for f in finds:
        flags[f.row, TYPES.index(f.kind)] = True
    return Scan(len(per_row), chosen, finds, flags, time.perf_counter() - t0, candidates)


def snippet(text: str, f: Find, width: int = 40, types: Iterable[str] | None = None) -> str:
    """A short redacted window around one find: "…call me at [PHONE] after six…". Every find of the whole
    text is redacted (so context words outside the window still count), and the window never cuts one."""
    text = str(text)
    finds = find(text, types)
    a, b = max(0, f.start - width), min(len(text), f.end + width)
    for g in finds:  # widen to whole finds at the edges so no half-number is shown
        if g.start < a < g.end:
            a = g.start
        if g.start < b < g.end:
            b = g.end
    parts, last = [], a
    for g in finds:
        if g.start >= a and g.end <= b:
            parts.append(text[last:g.start])
            parts.append(TOKENS[g.kind])
            last = g.end
    parts.append(text[last:b])
    out = " ".join("".join(parts).split())
    return ("…" if a > 0 else "") + out + ("…" if b < len(text) else "")
