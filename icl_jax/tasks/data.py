"""Demo lists and test pools of the DOT-ICL study, as plain constants.

Transcribed from the reproduction spec of ``bryanc5864/DOT-ICL@963ffce``
(sections 2, 3.1 and 3.2; provenance and what is uncertain:
``third_party/README.md``). Order matters: test inputs are produced by
shuffling these tuples with ``random.Random(42)``, so every pool is kept in
the order the original code lists it (verified by replaying the RNG against
the sequences of protocol section 2; see ``tests/tasks/test_rng_replay.py``).
"""

from __future__ import annotations

# The 50 five-letter words shared by uppercase, first_letter, repeat_word,
# length, reverse and pig_latin (protocol section 3.1).
WORDS_50: tuple[str, ...] = tuple(
    "grape house juice knife lemon mango nerve olive pearl queen river stone"
    " tower uncle valve wheat youth zebra ankle badge candy dream eagle frost"
    " globe honey ivory jolly kayak lunar maple noble ocean piano quilt robin"
    " sugar trend urban vivid waltz pixel crane dwarf ember fjord glyph haven"
    " index joker".split()
)

# Demo inputs shared by the word tasks (first k are used).
WORD_DEMO_INPUTS: tuple[str, ...] = (
    "apple", "brain", "cloud", "delta", "flame",
)

PIG_LATIN_DEMOS: tuple[tuple[str, str], ...] = (
    ("apple", "appleay"),
    ("brain", "ainbray"),
    ("cloud", "oudclay"),
    ("delta", "eltaday"),
    ("flame", "ameflay"),
)

LINEAR_DEMOS: tuple[tuple[str, str], ...] = (
    ("3", "6"), ("5", "10"), ("7", "14"), ("2", "4"), ("9", "18"),
)
# Integers 1..60 without the demo inputs {2, 3, 5, 7, 9}: 55 numbers.
LINEAR_POOL: tuple[str, ...] = tuple(
    str(i) for i in range(1, 61) if i not in (2, 3, 5, 7, 9)
)

SENTIMENT_DEMOS: tuple[tuple[str, str], ...] = (
    ("joyful", "positive"),
    ("angry", "negative"),
    ("wonderful", "positive"),
    ("terrible", "negative"),
    ("cheerful", "positive"),
)
# (word, label) in the original order; 25 positive / 25 negative.
SENTIMENT_ITEMS: tuple[tuple[str, str], ...] = tuple(
    (w[:-1], "positive" if w.endswith("+") else "negative")
    for w in (
        "happy+ sad- excited+ fearful- grateful+ hostile- hopeful+ anxious-"
        " proud+ jealous- loving+ bitter- peaceful+ furious- delighted+"
        " miserable- confident+ worried- content+ gloomy- radiant+ devastated-"
        " thrilled+ depressed- amused+ disgusted- inspired+ frustrated-"
        " optimistic+ pessimistic- blissful+ resentful- enthusiastic+"
        " melancholy- ecstatic+ sorrowful- compassionate+ vindictive- serene+"
        " agitated- jubilant+ despondent- affectionate+ spiteful- thankful+"
        " envious- elated+ dejected- generous+ cruel-"
    ).split()
)

ANTONYM_DEMOS: tuple[tuple[str, str], ...] = (
    ("hot", "cold"), ("big", "small"), ("fast", "slow"), ("happy", "sad"),
    ("light", "dark"),
)
# word -> (primary answer, alternates accepted by the multi-answer scorer).
ANTONYM_ITEMS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("tall", "short", ("small",)),
    ("old", "young", ("new",)),
    ("rich", "poor", ()),
    ("strong", "weak", ("frail",)),
    ("hard", "soft", ("easy",)),
    ("long", "short", ()),
    ("thick", "thin", ("slim",)),
    ("wide", "narrow", ("thin",)),
    ("deep", "shallow", ()),
    ("loud", "quiet", ("soft", "silent")),
    ("clean", "dirty", ("filthy",)),
    ("dry", "wet", ("moist",)),
    ("early", "late", ()),
    ("full", "empty", ()),
    ("open", "closed", ("shut",)),
    ("sharp", "dull", ("blunt",)),
    ("smooth", "rough", ("coarse",)),
    ("sweet", "bitter", ("sour",)),
    ("brave", "coward", ("cowardly", "timid", "fearful")),
    ("bright", "dim", ("dark", "dull")),
    ("calm", "nervous", ("agitated", "stormy", "anxious")),
    ("cheap", "expensive", ("costly",)),
    ("clear", "cloudy", ("unclear", "opaque")),
    ("alive", "dead", ()),
    ("love", "hate", ("hatred",)),
    ("true", "false", ("untrue",)),
    ("wise", "foolish", ("stupid",)),
    ("north", "south", ()),
    ("east", "west", ()),
    ("win", "lose", ("loss",)),
    ("push", "pull", ()),
    ("rise", "fall", ("drop",)),
    ("give", "take", ("receive",)),
    ("buy", "sell", ()),
    ("start", "stop", ("end", "finish")),
    ("teach", "learn", ()),
    ("attack", "defend", ("defense", "retreat")),
    ("accept", "reject", ("decline", "refuse")),
    ("arrive", "depart", ("leave",)),
    ("ancient", "modern", ("new", "contemporary")),
    ("bold", "timid", ("meek", "shy")),
    ("complex", "simple", ("easy",)),
    ("create", "destroy", ("demolish",)),
    ("expand", "shrink", ("contract", "reduce")),
    ("forget", "remember", ("recall",)),
    ("generous", "selfish", ("stingy", "greedy")),
    ("humble", "arrogant", ("proud", "vain")),
    ("include", "exclude", ("omit",)),
    ("maximum", "minimum", ()),
    ("praise", "criticize", ("blame", "condemn")),
)
# Alternates of the demo words (scored like test items).
ANTONYM_DEMO_ALTERNATES: dict[str, tuple[str, ...]] = {
    "hot": ("cool",),
    "big": ("little", "tiny"),
    "fast": (),
    "happy": ("unhappy", "miserable"),
    "light": ("heavy",),
}

PATTERN_DEMOS: tuple[tuple[str, str], ...] = (
    ("A B A B A", "B"),
    ("1 2 1 2 1", "2"),
    ("X Y X Y X", "Y"),
    ("P Q P Q P", "Q"),
    ("M N M N M", "N"),
)
# The 51 alternating strings, written as their two alternating symbols
# ("CD" -> "C D C D C", answer "D"), in the original order.
_PATTERN_SYMBOL_PAIRS: tuple[str, ...] = (
    "CD", "EF", "GH", "IJ", "KL", "RS", "TU", "VW", "34", "56", "78", "90",
    "ab", "cd", "ef", "gh", "ij", "kl", "mn", "op", "qr", "st", "uv", "wx",
    "yz", "ZY", "WX", "QR", "ON", "BC", "DE", "FG", "HI", "JK", "LM", "ST",
    "UV", "23", "45", "67", "89", "10", "@#", "+-", "!?", "ac", "bd", "xz",
    "pq", "rt", "wy",
)
PATTERN_POOL: tuple[str, ...] = tuple(
    " ".join([a, b, a, b, a]) for a, b in _PATTERN_SYMBOL_PAIRS
)

# --- exp15 custom tasks (demos sampled with their own Random(42)) ---------
# uppercase_period's word list (variant ending ocean..tiger).
EXP15_WORDS_UPPER: tuple[str, ...] = tuple(
    "hello world apple brain cloud dance eagle flame ghost house juice knife"
    " lemon mouse ocean piano queen river storm tiger".split()
)
# reverse / reverse_spaced word list (variant ending noble..storm).
EXP15_WORDS_REVERSE: tuple[str, ...] = tuple(
    "hello world apple brain cloud dance eagle flame ghost house juice knife"
    " lemon mouse noble ocean piano queen river storm".split()
)
# repeat_comma's (and repeat_n's) word list.
EXP15_WORDS_REPEAT: tuple[str, ...] = tuple(
    "apple brain cloud dance eagle flame ghost house juice knife lemon mouse"
    " noble ocean piano queen river storm tiger urban".split()
)
LENGTH_WORD_WORDS: tuple[str, ...] = tuple(
    "hi cat door apple banana elephant computer a go run jump house tree bird"
    " sky moon".split()
)

# --- exp33 variable-length tasks ----------------------------------------
REPEAT_N_DEMOS: tuple[tuple[str, str], ...] = (
    ("dog 2", "dog dog"),
    ("sun 3", "sun sun sun"),
    ("cat 4", "cat cat cat cat"),
    ("box 2", "box box"),
    ("hat 3", "hat hat hat"),
)
REPEAT_N_POOL: tuple[str, ...] = tuple(
    f"{w} {n}" for w, n in (
        ("apple", 2), ("brain", 3), ("cloud", 4), ("dance", 2), ("eagle", 5),
        ("flame", 3), ("ghost", 2), ("house", 4), ("juice", 3), ("knife", 2),
        ("lemon", 5), ("mouse", 3), ("noble", 2), ("ocean", 4), ("piano", 3),
        ("queen", 2), ("river", 5), ("storm", 3), ("tiger", 4), ("urban", 2),
    )
)
SPELL_OUT_DEMOS: tuple[tuple[str, str], ...] = (
    ("3", "three"), ("12", "twelve"), ("20", "twenty"), ("7", "seven"),
    ("15", "fifteen"),
)
SPELL_OUT_POOL: tuple[str, ...] = tuple(
    str(i) for i in (1, 2, 4, 5, 6, 8, 9, 10, 11, 13, 14, 16, 17, 18, 19, 21,
                     22, 23, 24, 25)
)
