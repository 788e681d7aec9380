"""English for the captions vidtool writes: the indefinite article a word takes ("an orange circle",
"a red circle", "an owl", "a unicorn"), by its first sound as far as the spelling tells it."""

from __future__ import annotations

# Vowel letters read as a consonant sound ("a unicorn", "a one-way street"), and a silent h ("an hour").
_CONSONANT_SOUND = ("uni", "use", "usu", "uti", "ure", "eu", "ewe", "one", "once")
_VOWEL_SOUND = ("hour", "honest", "honor", "honour", "heir")


def with_article(phrase: str) -> str:
    """`phrase` after "a" or "an", whichever its first word takes."""
    word = phrase.lstrip().lower()
    vowel = word[:1] in set("aeiou") and not word.startswith(_CONSONANT_SOUND) or word.startswith(_VOWEL_SOUND)
    return f"{'an' if vowel else 'a'} {phrase}"
