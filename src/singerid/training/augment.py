"""Augmentations applied to each training view independently, every draw seeded.

Chain, in this order: formant-preserving pitch shift (Praat "Change gender"), channel EQ (off
by default; not in the paper), Gaussian noise, gain, time mask. The pitch shift comes first so
Praat analyses the clean voice, and so the two ways of computing it below are the same transform:

* ``pitch_mode="praat"`` (reference): crop, then run Praat on the crop (~70 ms per 4 s view).
* ``pitch_mode="bank"`` (fast): once per song, Praat renders ``bank_variants`` pitch-shifted
  copies of the whole song (same call, duration factor 1 so every sample stays aligned, ratios
  from the same distributions); a view crops the same span from a randomly chosen copy. Banks
  live in memory (optionally float16) and, with ``bank_dir``, in ``.npy`` files that are
  memory-mapped, so DataLoader workers and later runs share them. Fill them in the main
  process with :meth:`Augmenter.precompute` before workers fork.

Differences of the bank path: a song has ``bank_variants`` pitch ratios instead of a fresh
ratio per view, and the range factor scales F0 around the song's median instead of the crop's.

Praat's overlap-add draws random numbers: its (process-global) generator is seeded before
every call, from the view's ``rng`` or from the bank seed, so same seed means same output.

Typical use in a training dataset::

    aug = Augmenter(AugmentConfig(pitch_mode="bank", bank_dir="runs/x/pitch_bank"))
    aug.precompute(songs)                                # main process, before workers fork
    v1 = aug.view(key, songs[key], start1, 176_400, rng)
    v2 = aug.view(key, songs[key], start2, 176_400, rng)

Unvoiced or too-short material cannot be pitch-shifted; it is returned unshifted and counted
in :attr:`Augmenter.stats` and in the per-view :class:`ViewResult` (each DataLoader worker
has its own counters, so return ``ViewResult.pitch`` with the item to log totals).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from ..audio import SAMPLE_RATE, check_model_rate
from ..errors import AudioError, ConfigError
from ..fileio import atomic_path, write_text
from ..model.hub import singerid_home
from ..praat import PRAAT_SEEDS, change_gender
from ..workers import pool_map

BANK_FORMAT = 1
"""Bumped whenever the bank files' content would change for the same configuration."""


def _pair(value: Sequence[float], name: str, low: float | None = None) -> tuple[float, float]:
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"augment.{name} must be a pair [low, high], got {value!r}.") from exc
    if a > b or (low is not None and a < low):
        bound = f" and low >= {low}" if low is not None else ""
        raise ConfigError(f"augment.{name} = {value!r}: need low <= high{bound}.")
    return a, b


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation settings; the defaults are the paper's values."""

    noise_p: float = 0.5
    noise_std: tuple[float, float] = (0.001, 0.05)
    gain_p: float = 0.5
    gain_db: tuple[float, float] = (-6.0, 0.0)
    mask_p: float = 0.5
    mask_max_fraction: float = 1 / 8
    pitch_p: float = 0.5
    pitch_ratio: tuple[float, float] = (1.0, 1.3)
    """Pitch-median ratio range; the drawn ratio is inverted with probability 1/2."""
    pitch_range_ratio: tuple[float, float] = (1.0, 1.5)
    """Pitch-range factor range; the drawn factor is inverted with probability 1/2."""
    formant_ratio: float = 1.0
    eq_p: float = 0.0
    """Probability of a random channel EQ (not in the paper): a spectral tilt plus ``eq_bands``
    bell filters, like the microphone and room colouring that differs between recordings."""
    eq_tilt_db_oct: float = 1.5
    """The tilt is drawn uniformly in ``±eq_tilt_db_oct`` dB per octave around 1 kHz."""
    eq_bands: int = 3
    eq_band_db: float = 4.0
    """Standard deviation of each bell's gain in dB (centres log-uniform in 150 Hz-12 kHz,
    widths 0.5-2 octaves)."""
    pitch_floor: float = 75.0
    pitch_ceiling: float = 600.0
    sample_rate: int = SAMPLE_RATE
    pitch_mode: str = "praat"
    bank_variants: int = 8
    bank_dtype: str = "float32"
    bank_dir: str | None = None
    bank_seed: int = 0

    def __post_init__(self) -> None:
        for name in ("noise_p", "gain_p", "mask_p", "pitch_p", "eq_p"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ConfigError(f"augment.{name} = {p}: a probability must lie in [0, 1].")
        object.__setattr__(self, "noise_std", _pair(self.noise_std, "noise_std", low=0.0))
        object.__setattr__(self, "gain_db", _pair(self.gain_db, "gain_db"))
        object.__setattr__(self, "pitch_ratio", _pair(self.pitch_ratio, "pitch_ratio", low=1.0))
        object.__setattr__(self, "pitch_range_ratio", _pair(self.pitch_range_ratio, "pitch_range_ratio", low=1.0))
        if not 0.0 < self.mask_max_fraction <= 1.0:
            raise ConfigError(f"augment.mask_max_fraction = {self.mask_max_fraction}: must lie in (0, 1].")
        if not 0.0 < self.pitch_floor < self.pitch_ceiling:
            raise ConfigError(
                f"augment pitch floor/ceiling = {self.pitch_floor}/{self.pitch_ceiling} Hz: need 0 < floor < ceiling."
            )
        if self.eq_tilt_db_oct < 0 or self.eq_band_db < 0 or self.eq_bands < 0:
            raise ConfigError("augment.eq_tilt_db_oct, eq_band_db and eq_bands must not be negative.")
        if self.formant_ratio <= 0:
            raise ConfigError("augment.formant_ratio must be positive.")
        check_model_rate(self.sample_rate, "augment.sample_rate")
        if self.pitch_mode not in ("praat", "bank"):
            raise ConfigError(f"augment.pitch_mode = {self.pitch_mode!r}: choose 'praat' or 'bank'.")
        if self.bank_variants < 1:
            raise ConfigError(f"augment.bank_variants = {self.bank_variants}: need at least 1.")
        if self.bank_dtype not in ("float32", "float16"):
            raise ConfigError(f"augment.bank_dtype = {self.bank_dtype!r}: choose 'float32' or 'float16'.")


# --- the individual transforms (pure functions) -----------------------------------------


def add_noise(x: np.ndarray, std: float, seed: int) -> np.ndarray:
    """``x`` plus white Gaussian noise of standard deviation ``std`` (seeded)."""
    noise = np.random.default_rng(seed).standard_normal(len(x), dtype=np.float32)
    noise *= np.float32(std)
    return x + noise


def apply_gain(x: np.ndarray, gain_db: float) -> np.ndarray:
    """``x`` scaled by ``10 ** (gain_db / 20)``."""
    return x * np.float32(10.0 ** (gain_db / 20.0))


EQ_BAND_HZ = (150.0, 12000.0)
EQ_BAND_OCTAVES = (0.5, 2.0)


def eq_response_db(freqs: np.ndarray, tilt_db_oct: float, bands: Sequence[tuple[float, float, float]]) -> np.ndarray:
    """Gain in dB at ``freqs`` (Hz) of a tilt around 1 kHz plus bells ``(centre Hz, gain dB, width octaves)``."""
    octave = np.log2(np.maximum(freqs, freqs.dtype.type(20.0)) / freqs.dtype.type(1000.0))
    gain = octave * freqs.dtype.type(tilt_db_oct)
    for centre, db, width in bands:
        gain += freqs.dtype.type(db) / (1.0 + np.square((octave - np.log2(centre / 1000.0)) / (width / 2.0), dtype=freqs.dtype))
    return gain


def apply_eq(x: np.ndarray, tilt_db_oct: float, bands: Sequence[tuple[float, float, float]], sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """``x`` through the zero-phase filter of :func:`eq_response_db` (applied in the frequency domain)."""
    import scipy.fft

    # The response is smooth: evaluate it on a coarse grid and interpolate to every FFT bin.
    coarse = np.linspace(0.0, sample_rate / 2, 2049, dtype=np.float32)
    coarse_gain = np.power(np.float32(10.0), eq_response_db(coarse, tilt_db_oct, bands) / np.float32(20.0))
    gain = np.interp(np.fft.rfftfreq(len(x), 1.0 / sample_rate), coarse, coarse_gain).astype(np.float32)
    return scipy.fft.irfft(scipy.fft.rfft(np.asarray(x, np.float32)) * gain, n=len(x)).astype(np.float32)


def apply_time_mask(x: np.ndarray, start: int, length: int) -> np.ndarray:
    """Copy of ``x`` with ``x[start:start + length]`` set to zero."""
    out = x.copy()
    out[start : start + length] = 0.0
    return out


def praat_settings(cfg: AugmentConfig) -> dict[str, float]:
    """The pitch search range and formant ratio of ``cfg``, as :func:`singerid.praat.change_gender` takes them."""
    return {"pitch_floor": cfg.pitch_floor, "pitch_ceiling": cfg.pitch_ceiling, "formant_ratio": cfg.formant_ratio}


def draw_pitch_factors(rng: np.random.Generator, cfg: AugmentConfig) -> tuple[float, float]:
    """``(pitch ratio, range factor)``: each uniform in its range, inverted with probability 1/2."""
    ratio = rng.uniform(*cfg.pitch_ratio)
    ratio = 1.0 / ratio if rng.random() < 0.5 else ratio
    spread = rng.uniform(*cfg.pitch_range_ratio)
    spread = 1.0 / spread if rng.random() < 0.5 else spread
    return float(ratio), float(spread)


# --- the pitch bank ---------------------------------------------------------------------


@dataclass(frozen=True)
class PitchBank:
    """Pitch-shifted renderings of one whole song, aligned sample for sample with it."""

    audio: np.ndarray
    """``(K, n)`` variants, or ``(0, n)`` when the song has no voiced frame."""
    ratios: tuple[float, ...]
    range_ratios: tuple[float, ...]


def default_bank_dir() -> Path:
    """Where pitch banks go when ``bank_dir`` is unset: ``pitch-bank`` in singerid's cache folder.

    Bank files are named by a hash of the song's samples and the bank settings, so one cache
    serves every run and data folder without mixing, and a changed song gets a new bank.
    """
    return singerid_home() / "pitch-bank"


def key_seed(song_key: str) -> int:
    """A stable 64-bit seed from a song key (the same in every process, unlike ``hash``)."""
    return int.from_bytes(hashlib.blake2b(song_key.encode("utf-8"), digest_size=8).digest(), "little")


def _bank_draws(song_key: str, cfg: AugmentConfig) -> tuple[list[tuple[float, float]], int]:
    rng = np.random.default_rng([cfg.bank_seed, key_seed(song_key)])
    factors = [draw_pitch_factors(rng, cfg) for _ in range(cfg.bank_variants)]
    return factors, int(rng.integers(PRAAT_SEEDS))


def bank_factors(song_key: str, cfg: AugmentConfig) -> list[tuple[float, float]]:
    """The ``bank_variants`` seeded ``(ratio, range)`` draws of a song (from ``bank_seed`` and the key)."""
    return _bank_draws(song_key, cfg)[0]


def _bank_file(song_key: str, song: np.ndarray, cfg: AugmentConfig) -> Path:
    h = hashlib.blake2b(digest_size=16)
    settings = (
        BANK_FORMAT, song_key, cfg.sample_rate, cfg.pitch_ratio, cfg.pitch_range_ratio, cfg.formant_ratio,
        cfg.pitch_floor, cfg.pitch_ceiling, cfg.bank_variants, cfg.bank_seed, cfg.bank_dtype, song.shape,
    )  # fmt: skip
    h.update(repr(settings).encode("utf-8"))
    h.update(np.ascontiguousarray(song, dtype=np.float32).tobytes())
    return Path(str(cfg.bank_dir)) / f"{h.hexdigest()}.npy"


def build_bank(song_key: str, song: np.ndarray, cfg: AugmentConfig) -> tuple[PitchBank, int]:
    """Render the bank of one song; also returns how many range factors were dropped."""
    factors, seed = _bank_draws(song_key, cfg)
    shifts = change_gender(song, factors, seed, **praat_settings(cfg))
    if shifts is None:
        return PitchBank(np.zeros((0, len(song)), dtype=cfg.bank_dtype), (), ()), 0
    audio = np.stack([s.audio for s in shifts]).astype(cfg.bank_dtype)
    bank = PitchBank(audio, tuple(s.ratio for s in shifts), tuple(s.range_ratio for s in shifts))
    return bank, sum(s.range_reset for s in shifts)


# --- the augmenter ----------------------------------------------------------------------


@dataclass(frozen=True)
class ViewParams:
    """The random choices for one view (``None``: that augmentation is off for this view)."""

    pitch: tuple[float, float] | None = None
    """``(ratio, range factor)`` for the praat path."""
    praat_seed: int | None = None
    variant: int | None = None
    """Index into the song's bank for the bank path."""
    noise_std: float | None = None
    noise_seed: int | None = None
    gain_db: float | None = None
    mask: tuple[int, int] | None = None
    """``(start, length)`` of the zeroed span."""
    eq: tuple[float, tuple[tuple[float, float, float], ...]] | None = None
    """``(tilt dB/octave, bells)`` of the channel EQ."""


@dataclass(frozen=True)
class ViewResult:
    """One augmented view and what was applied to it."""

    audio: np.ndarray
    params: ViewParams
    pitch: str
    """``"off"``, ``"shifted"`` or ``"unvoiced"`` (asked for but impossible: returned unshifted)."""
    pitch_ratio: float | None = None
    range_ratio: float | None = None


@dataclass
class AugmentStats:
    """Counters since the augmenter was made (per process)."""

    views: int = 0
    pitch_shifted: int = 0
    pitch_unvoiced: int = 0
    range_reset: int = 0
    banks_built: int = 0
    banks_loaded: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters, for logging."""
        return asdict(self)


@dataclass
class Augmenter:
    """Makes augmented views of crops of songs; see the module docstring for the two pitch paths."""

    cfg: AugmentConfig = field(default_factory=AugmentConfig)
    stats: AugmentStats = field(default_factory=AugmentStats, init=False)
    _banks: dict[str, PitchBank] = field(default_factory=dict, init=False, repr=False)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        if self.cfg.bank_dir:
            # Worker processes started by pickling re-open the memory-mapped files instead of copying.
            state["_banks"] = {}
        return state

    def draw(self, rng: np.random.Generator, length: int) -> ViewParams:
        """Draw the random choices for one view of ``length`` samples."""
        cfg = self.cfg
        params = ViewParams()
        if rng.random() < cfg.pitch_p:
            if cfg.pitch_mode == "bank":
                params = replace(params, variant=int(rng.integers(cfg.bank_variants)))
            else:
                factors = draw_pitch_factors(rng, cfg)
                params = replace(params, pitch=factors, praat_seed=int(rng.integers(PRAAT_SEEDS)))
        if rng.random() < cfg.noise_p:
            params = replace(params, noise_std=float(rng.uniform(*cfg.noise_std)), noise_seed=int(rng.integers(2**63)))
        if rng.random() < cfg.gain_p:
            params = replace(params, gain_db=float(rng.uniform(*cfg.gain_db)))
        longest = int(length * cfg.mask_max_fraction)
        if rng.random() < cfg.mask_p and longest >= 1:
            span = int(rng.integers(1, longest + 1))
            params = replace(params, mask=(int(rng.integers(0, length - span + 1)), span))
        # Drawn last, and only when enabled, so the other draws stay those of the paper's chain.
        if cfg.eq_p > 0 and rng.random() < cfg.eq_p:
            bands = tuple(
                (float(np.exp(rng.uniform(*np.log(EQ_BAND_HZ)))), float(rng.normal(0.0, cfg.eq_band_db)), float(rng.uniform(*EQ_BAND_OCTAVES)))
                for _ in range(cfg.eq_bands)
            )
            params = replace(params, eq=(float(rng.uniform(-cfg.eq_tilt_db_oct, cfg.eq_tilt_db_oct)), bands))
        return params

    def view(self, song_key: str, song: np.ndarray, start: int, length: int, rng: np.random.Generator) -> np.ndarray:
        """One augmented crop ``song[start:start + length]`` (float32, ``length`` samples)."""
        return self.view_with_params(song_key, song, start, length, rng).audio

    def view_with_params(
        self, song_key: str, song: np.ndarray, start: int, length: int, rng: np.random.Generator
    ) -> ViewResult:
        """Like :meth:`view`, also returning the drawn parameters and the pitch outcome."""
        return self.apply(song_key, song, start, length, self.draw(rng, length))

    def apply(self, song_key: str, song: np.ndarray, start: int, length: int, params: ViewParams) -> ViewResult:
        """Apply drawn ``params`` to the crop ``song[start:start + length]``."""
        _check_crop(song_key, song, start, length)
        stop = start + length
        audio = None
        outcome, ratio, spread = "off", None, None
        if params.variant is not None:
            bank = self.bank(song_key, song)
            if len(bank.ratios):
                k = params.variant
                audio = bank.audio[k, start:stop].astype(np.float32)
                outcome, ratio, spread = "shifted", bank.ratios[k], bank.range_ratios[k]
            else:
                outcome = "unvoiced"
        elif params.pitch is not None:
            shifts = change_gender(song[start:stop], [params.pitch], params.praat_seed or 0, **praat_settings(self.cfg))
            if shifts is None:
                outcome = "unvoiced"
            else:
                audio, ratio, spread = shifts[0].audio, shifts[0].ratio, shifts[0].range_ratio
                outcome = "shifted"
                self.stats.range_reset += shifts[0].range_reset
        if audio is None:
            audio = np.array(song[start:stop], dtype=np.float32)
        if params.eq is not None:
            audio = apply_eq(audio, *params.eq, sample_rate=self.cfg.sample_rate)
        if params.noise_std is not None and params.noise_seed is not None:
            audio = add_noise(audio, params.noise_std, params.noise_seed)
        if params.gain_db is not None:
            audio = apply_gain(audio, params.gain_db)
        if params.mask is not None:
            audio = apply_time_mask(audio, *params.mask)
        self.stats.views += 1
        self.stats.pitch_shifted += outcome == "shifted"
        self.stats.pitch_unvoiced += outcome == "unvoiced"
        return ViewResult(audio, params, outcome, ratio, spread)

    def bank(self, song_key: str, song: np.ndarray) -> PitchBank:
        """The song's pitch bank: from memory, else from ``bank_dir``, else rendered now (and saved)."""
        bank = self._banks.get(song_key)
        if bank is None:
            bank = self._load_or_build(song_key, np.asarray(song))
            self._banks[song_key] = bank
        if bank.audio.shape[1] != len(song):
            raise AudioError(
                f"song {song_key!r}: has {len(song)} samples but its pitch bank has {bank.audio.shape[1]}. "
                "Each song key must always name the same audio; use unique keys."
            )
        return bank

    def precompute(self, songs: Mapping[str, np.ndarray], progress: bool = False, n_jobs: int = 1) -> int:
        """Fill the pitch banks of ``songs``; returns how many banks are held (0 in praat mode).

        Call it in the main process before DataLoader workers fork, so they share the banks.
        In praat mode there is nothing to precompute and it returns 0 at once. With a
        ``bank_dir``, ``n_jobs`` processes render the missing banks to disk in parallel first.
        """
        if self.cfg.pitch_mode != "bank":
            return 0
        items = list(songs.items())
        rendered = False
        if n_jobs > 1 and self.cfg.bank_dir:
            missing = [(k, v) for k, v in items if not _bank_file(k, v, self.cfg).with_suffix(".json").exists()]
            rendered = bool(missing)
            if missing:
                from tqdm import tqdm

                jobs = [(self.cfg, k, v) for k, v in missing]
                for _ in tqdm(pool_map(_render_bank, jobs, n_jobs), total=len(jobs), desc="pitch banks", unit="song", disable=not progress):
                    pass
        if progress and not rendered:
            from tqdm import tqdm

            items = tqdm(items, desc="pitch banks", unit="song")
        for key, song in items:
            _check_song(key, song)
            self.bank(key, song)
        return len(self._banks)

    def _load_or_build(self, song_key: str, song: np.ndarray) -> PitchBank:
        _check_song(song_key, song)
        cfg = self.cfg
        path = _bank_file(song_key, song, cfg) if cfg.bank_dir else None
        if path is not None and path.exists() and path.with_suffix(".json").exists():
            meta = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
            audio = np.load(path, mmap_mode="r") if meta["ratios"] else np.load(path)
            self.stats.banks_loaded += 1
            return PitchBank(audio, tuple(meta["ratios"]), tuple(meta["range_ratios"]))
        bank, resets = build_bank(song_key, song, cfg)
        self.stats.banks_built += 1
        self.stats.range_reset += resets
        if path is not None:
            # The sidecar goes first: a bank file on disk always has its factors beside it.
            meta = {"song_key": song_key, "ratios": list(bank.ratios), "range_ratios": list(bank.range_ratios)}
            write_text(path.with_suffix(".json"), json.dumps(meta) + "\n")
            with atomic_path(path) as tmp:
                np.save(tmp, bank.audio)
            if bank.ratios:
                bank = replace(bank, audio=np.load(path, mmap_mode="r"))
        return bank


def _render_bank(job: tuple[AugmentConfig, str, np.ndarray]) -> None:
    """Worker of :meth:`Augmenter.precompute`: build one bank and write it to ``bank_dir``."""
    cfg, key, song = job
    Augmenter(cfg)._load_or_build(key, song)


def _check_song(song_key: str, song: np.ndarray) -> None:
    if not isinstance(song, np.ndarray) or song.ndim != 1 or not np.issubdtype(song.dtype, np.floating):
        shape = getattr(song, "shape", type(song).__name__)
        raise AudioError(f"song {song_key!r}: expected a 1-D float array (mono samples), got {shape}. Mix to mono first.")


def _check_crop(song_key: str, song: np.ndarray, start: int, length: int) -> None:
    _check_song(song_key, song)
    if length < 1 or start < 0 or start + length > len(song):
        raise AudioError(
            f"song {song_key!r}: crop of {length} samples at {start} does not fit its {len(song)} samples. "
            f"Pick 0 <= start <= {len(song) - length} (pad songs shorter than the crop first)."
        )
