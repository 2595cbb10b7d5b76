"""Procedural multi-singer corpus: the built-in default data of the demo and the tests.

Each singer is a source-filter voice with a fixed timbre identity (vocal-tract length,
per-vowel formant offsets, formant levels and bandwidths, singer's formant, glottal open
quotient and tilt, breathiness, high-frequency air, jitter, shimmer, vibrato rate).
Each song is one long file: phrases of sung syllables (consonant + vowel) with rests,
portamento and vibrato, in sections of different techniques, recorded in its own session
(key, tempo, room, channel EQ, background noise, small drifts of the voice).

Identity lives in timbre; pitch does not give the singer away, because every song's key
moves the melody further than the singers' median pitches differ.

Determinism: singer ``i`` depends only on ``(seed, i)``, song ``j`` of singer ``i`` only on
``(seed, i, j)``, so a corpus of N singers is the first N singers of a larger one.

``params`` draws singers, songs and scores; ``render`` turns one song into audio;
``corpus`` writes the folder of songs and its manifests.
"""

from .corpus import generate_corpus
from .params import (
    TECHNIQUES,
    VOWELS,
    Section,
    SingerParams,
    SongParams,
    Technique,
    sample_singer,
    sample_song,
)
from .render import SYNTH_VERSION, sing_song

__all__ = [
    "SYNTH_VERSION",
    "TECHNIQUES",
    "VOWELS",
    "Section",
    "SingerParams",
    "SongParams",
    "Technique",
    "generate_corpus",
    "sample_singer",
    "sample_song",
    "sing_song",
]
