"""Training data at scale: WebDataset-style tar shards (streamed as positive pairs by
:mod:`singerid.training.shard_stream`).

A shard folder written by :func:`write_shards` (``singerid shard``) holds::

    shard-000000.tar     per file: KEY.json (metadata) then KEY.flac (16-bit, 44.1 kHz, mono)
    shard-000001.tar     ...  files are shuffled (seeded) across shards
    shards.plan.json     fingerprint of the file list and settings (written first; guards resuming)
    shards.json          the index: shard names, file counts, hours (written last)

The tars follow WebDataset's naming convention (members ``KEY.ext``, one sample's members
next to each other), so ``webdataset.WebDataset`` reads them too; this package needs only the
standard library's ``tarfile``.

Modules: :mod:`.index` (the folder layout and ``shards.json``), :mod:`.write`, :mod:`.read` (one
shard) and :mod:`.validation` (the held-out shards); training pairs are streamed by
:mod:`singerid.training.shard_stream`.

Streaming (:class:`~singerid.training.shard_stream.ShardPairStream`). The ``world * num_workers`` streams (processes times
DataLoader workers) each take a disjoint share of the shards, re-dealt every epoch from
``(seed, epoch)``, so no file is seen twice in an epoch. A stream walks its shards reading
only tar headers and the small JSON entries, passes those records through a seeded shuffle
buffer (metadata only, so its size costs no audio memory), and for each record reads just the
FLAC frames of two random crops (random access inside the shard: the shards must sit on a
local or mounted file system). A pair is a pure function of ``(seed, epoch, file key)``:
the same whichever process or worker draws it. Each crop is peak-normalised and augmented by
:meth:`~singerid.training.augment.Augmenter.view`, as :class:`~singerid.training.data.PairDataset` does
for crops read from disk. The pitch bank needs whole songs in memory, so streams take
``augment.pitch_mode: praat`` (see :func:`~singerid.training.shard_stream.stream_augmenter`).

Resume. Training streams are endless (epoch after epoch; the shuffle buffer drains at each
epoch's end, so every epoch's length is known from the index). A DataLoader takes batch ``b``
from worker ``b mod W``: global step ``s`` belongs to stream ``w = s mod W``, which has
delivered ``ceil((S - w) / W)`` batches before step ``S``. A resumed DataLoader's worker ``i``
plays stream ``(i + S) mod W`` and skips that many batches' items (whole epochs by arithmetic,
the rest by reading metadata only), so the run sees exactly the pairs an uninterrupted run
would have seen, provided world size, ``num_workers``, batch size and the shards are
unchanged. With other values it still resumes after the right amount of data, but draws
other files than the uninterrupted run would have.
"""

from .index import (
    FORMAT,
    INDEX_NAME,
    PLAN_NAME,
    SHARD_NAME,
    VERSION,
    ShardIndex,
    ShardInfo,
    is_shard_dir,
    read_index,
)
from .read import ShardRecord, read_shard
from .validation import ShardCropDataset, split_shards, validation_set
from .write import MAX_FILES_PER_SHARD, MAX_SHARD_BYTES, write_shards

__all__ = [
    "FORMAT", "INDEX_NAME", "MAX_FILES_PER_SHARD", "MAX_SHARD_BYTES", "PLAN_NAME", "SHARD_NAME", "VERSION",
    "ShardCropDataset", "ShardIndex", "ShardInfo", "ShardRecord", "is_shard_dir",
    "read_index", "read_shard", "split_shards", "validation_set", "write_shards",
]
