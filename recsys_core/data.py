"""Interaction logs -> per-user, time-ordered item sequences, and the splits every model shares.

Items are strings outside (the shop's product pk) and integers 1..n_items inside, 0 being
padding, so that models can use the index directly as an embedding row.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

EVENT_KINDS: tuple[str, ...] = (
    "view", "add_to_cart", "purchase", "search", "rec_click", "ad_click"
)
"""Event kinds a model sees; kind index = position + 1 (0 is padding). Others are dropped."""

KIND_INDEX: dict[str, int] = {kind: position + 1 for position, kind in enumerate(EVENT_KINDS)}

# Benchmark files have no event kinds: every interaction there is a review, i.e. a purchase.
_FILE_KIND = KIND_INDEX["purchase"]


class DataFormatError(ValueError):
    """A data file or an interaction does not have the expected layout."""


@dataclass
class SequenceData:
    """Every user's time-ordered items with their event kinds, plus the catalogue."""

    item_ids: list[str]
    users: list[str]
    sequences: list[np.ndarray]
    kinds: list[np.ndarray]
    item_texts: list[str] | None = None
    timestamps: list[np.ndarray] | None = None
    """Aligned with `sequences` when known; `time_split` needs them."""

    def __post_init__(self) -> None:
        if len(self.users) != len(self.sequences) or len(self.kinds) != len(self.sequences):
            raise ValueError("users, sequences and kinds must have one entry per user")
        if self.item_texts is not None and len(self.item_texts) != len(self.item_ids):
            raise ValueError("item_texts must have one text per item id")
        if self.timestamps is not None and len(self.timestamps) != len(self.sequences):
            raise ValueError("timestamps must have one array per user")
        for user, sequence, kinds in zip(self.users, self.sequences, self.kinds, strict=True):
            if len(sequence) != len(kinds):
                raise ValueError(f"user {user!r}: sequence and kinds differ in length")
            if len(sequence) and (sequence.min() < 1 or sequence.max() > len(self.item_ids)):
                raise ValueError(f"user {user!r}: item index outside 1..{len(self.item_ids)}")

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_interactions(self) -> int:
        return int(sum(len(sequence) for sequence in self.sequences))


def build_dataset(
    interactions: Iterable[tuple[str, str, str, float]],
    item_ids: Sequence[str] | None = None,
    item_texts: Mapping[str, str] | None = None,
    min_sequence_length: int = 1,
) -> SequenceData:
    """Group (user, item, kind, timestamp) rows into time-ordered sequences.

    With `item_ids` the catalogue is fixed (its order gives the internal indices) and events on
    items outside it are dropped: a product no longer sold must not be trained on or served.
    Without it, the catalogue is every item seen, in order of first appearance. Rows with a kind
    outside EVENT_KINDS (impressions) are dropped. Equal timestamps keep their input order.
    """
    if min_sequence_length < 1:
        raise ValueError("min_sequence_length must be at least 1")
    fixed_catalogue = item_ids is not None
    catalogue: list[str] = [str(item) for item in item_ids] if fixed_catalogue else []
    index_of: dict[str, int] = {item: position + 1 for position, item in enumerate(catalogue)}
    if len(index_of) != len(catalogue):
        raise ValueError("item_ids contains duplicates")

    events: dict[str, list[tuple[float, int, int]]] = {}
    for row_number, row in enumerate(interactions, start=1):
        try:
            user, item, kind, timestamp = row
        except (TypeError, ValueError) as error:
            raise DataFormatError(
                f"interaction {row_number}: expected (user, item, kind, timestamp), got {row!r}"
            ) from error
        kind_index = KIND_INDEX.get(kind)
        if kind_index is None:
            continue
        item = str(item)
        if item not in index_of:
            if fixed_catalogue:
                continue
            catalogue.append(item)
            index_of[item] = len(catalogue)
        try:
            time = float(timestamp)
        except (TypeError, ValueError):
            time = math.nan
        if not math.isfinite(time):
            raise DataFormatError(
                f"interaction {row_number}: timestamp {timestamp!r} is not a finite number"
            )
        events.setdefault(str(user), []).append((time, index_of[item], kind_index))

    users, sequences, kinds, timestamps = [], [], [], []
    for user, rows in events.items():
        if len(rows) < min_sequence_length:
            continue
        rows.sort(key=lambda event: event[0])  # stable: equal times keep input order
        users.append(user)
        timestamps.append(np.array([event[0] for event in rows], dtype=np.float64))
        sequences.append(np.array([event[1] for event in rows], dtype=np.int64))
        kinds.append(np.array([event[2] for event in rows], dtype=np.int64))

    texts = None
    if item_texts is not None:
        texts = [str(item_texts.get(item, "")) for item in catalogue]
    return SequenceData(catalogue, users, sequences, kinds, texts, timestamps)


@dataclass
class LeaveOneOut:
    """Last item = test, second-to-last = validation, the rest = training (S3-Rec protocol).

    Users with fewer than 3 items have nothing to hold out and appear only in `train`.
    `valid_users` / `test_users` index into `SequenceData.users`.
    """

    train: list[np.ndarray]
    train_kinds: list[np.ndarray]
    valid_history: list[np.ndarray]
    valid_kinds: list[np.ndarray]
    valid_target: np.ndarray
    test_history: list[np.ndarray]
    test_kinds: list[np.ndarray]
    test_target: np.ndarray
    valid_users: np.ndarray
    test_users: np.ndarray


def leave_one_out(data: SequenceData) -> LeaveOneOut:
    """Split every user's sequence as in the published benchmarks."""
    train, train_kinds = [], []
    valid_history, valid_kinds, valid_target = [], [], []
    test_history, test_kinds, test_target = [], [], []
    held_out_users = []
    for user_index, (sequence, kinds) in enumerate(zip(data.sequences, data.kinds, strict=True)):
        if len(sequence) < 3:
            train.append(sequence)
            train_kinds.append(kinds)
            continue
        train.append(sequence[:-2])
        train_kinds.append(kinds[:-2])
        valid_history.append(sequence[:-2])
        valid_kinds.append(kinds[:-2])
        valid_target.append(sequence[-2])
        test_history.append(sequence[:-1])
        test_kinds.append(kinds[:-1])
        test_target.append(sequence[-1])
        held_out_users.append(user_index)
    users = np.array(held_out_users, dtype=np.int64)
    return LeaveOneOut(
        train=train,
        train_kinds=train_kinds,
        valid_history=valid_history,
        valid_kinds=valid_kinds,
        valid_target=np.array(valid_target, dtype=np.int64),
        test_history=test_history,
        test_kinds=test_kinds,
        test_target=np.array(test_target, dtype=np.int64),
        valid_users=users,
        test_users=users.copy(),
    )


@dataclass
class TimeSplit:
    """Events up to the cutoff train the model; each user's events after it are held out."""

    train: list[np.ndarray]
    train_kinds: list[np.ndarray]
    test_history: list[np.ndarray]
    test_kinds: list[np.ndarray]
    test_target: np.ndarray
    test_users: np.ndarray


def time_split(data: SequenceData, cutoff_timestamp: float) -> TimeSplit:
    """Hold out, per user, the first event after the cutoff (history = everything before it).

    This mirrors serving: a model trained on the past is asked for the shopper's next item.
    Users with no event before the cutoff have no history and are not test cases.
    """
    if data.timestamps is None:
        raise ValueError("time_split needs timestamps; build the data with build_dataset")
    train, train_kinds = [], []
    test_history, test_kinds, test_target, test_users = [], [], [], []
    for user_index, (sequence, kinds, times) in enumerate(
        zip(data.sequences, data.kinds, data.timestamps, strict=True)
    ):
        n_before = int(np.searchsorted(times, cutoff_timestamp, side="right"))
        if n_before:
            train.append(sequence[:n_before])
            train_kinds.append(kinds[:n_before])
        if 0 < n_before < len(sequence):
            test_history.append(sequence[:n_before])
            test_kinds.append(kinds[:n_before])
            test_target.append(sequence[n_before])
            test_users.append(user_index)
    return TimeSplit(
        train=train,
        train_kinds=train_kinds,
        test_history=test_history,
        test_kinds=test_kinds,
        test_target=np.array(test_target, dtype=np.int64),
        test_users=np.array(test_users, dtype=np.int64),
    )


def item_counts(sequences: Iterable[np.ndarray], n_items: int) -> np.ndarray:
    """Interactions per item index (length n_items + 1; index 0 stays 0)."""
    arrays = [np.asarray(sequence, dtype=np.int64) for sequence in sequences]
    if not arrays:
        return np.zeros(n_items + 1, dtype=np.int64)
    return np.bincount(np.concatenate(arrays), minlength=n_items + 1)


# ---------------------------------------------------------------- file loaders (benchmarks)


def load_sequence_file(path: Path | str, item_text_path: Path | str | None = None) -> SequenceData:
    """Read `user item item ...` lines (time-ordered), optionally with `item_id<TAB>text` lines.

    Items that appear only in the text file join the catalogue with no interactions, so
    text-aware models can still recommend them.
    """
    path = Path(path)
    users: list[str] = []
    raw_sequences: list[list[str]] = []
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) < 2:
                raise DataFormatError(f"{path}:{line_number}: expected 'user item [item ...]'")
            users.append(fields[0])
            raw_sequences.append(fields[1:])
    if not users:
        raise DataFormatError(f"{path}: no user lines")
    duplicates = [user for user, count in Counter(users).items() if count > 1]
    if duplicates:
        duplicate = duplicates[0]
        raise DataFormatError(f"{path}: user {duplicate!r} has more than one line")

    texts = _read_item_texts(Path(item_text_path)) if item_text_path is not None else None
    catalogue: dict[str, int] = {}
    for sequence in raw_sequences:
        for item in sequence:
            catalogue.setdefault(item, len(catalogue) + 1)
    for item in texts or {}:
        catalogue.setdefault(item, len(catalogue) + 1)

    sequences = [np.array([catalogue[item] for item in items], dtype=np.int64)
                 for items in raw_sequences]
    kinds = [np.full(len(sequence), _FILE_KIND, dtype=np.int64) for sequence in sequences]
    item_ids = list(catalogue)
    item_texts = [texts.get(item, "") for item in item_ids] if texts is not None else None
    return SequenceData(item_ids, users, sequences, kinds, item_texts)


def _read_item_texts(path: Path) -> dict[str, str]:
    """`item_id<TAB>text` lines; a RecBole header line (`item_id:token<TAB>...`) is skipped."""
    texts: dict[str, str] = {}
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            line = line.rstrip("\n")
            if not line.strip() or (line_number == 1 and line.startswith("item_id:")):
                continue
            item, tab, text = line.partition("\t")
            if not tab or not item.strip():
                raise DataFormatError(f"{path}:{line_number}: expected 'item_id<TAB>text'")
            if item in texts:
                raise DataFormatError(f"{path}:{line_number}: item {item!r} appears twice")
            texts[item] = text.strip()
    return texts


def load_beauty(root: Path | str) -> SequenceData:
    """Amazon Beauty as used by S3-Rec: `Beauty.txt` plus category/brand attribute ids.

    Beauty has no product text, so each item's text lists its attribute ids as words
    ("attribute 12, attribute 8"): items sharing a brand or category then share tokens, which
    is the only side information these files carry.
    """
    directory = Path(root) / "amazon-beauty"
    data = load_sequence_file(directory / "Beauty.txt")
    attributes_path = directory / "Beauty_item2attributes.json"
    try:
        attributes = json.loads(attributes_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataFormatError(f"{attributes_path}:{error.lineno}: {error.msg}") from error
    if not isinstance(attributes, dict):
        raise DataFormatError(f"{attributes_path}: expected an object of item -> attribute ids")
    data.item_texts = [
        ", ".join(f"attribute {attribute}" for attribute in attributes.get(item, []))
        for item in data.item_ids
    ]
    return data


def load_scientific(root: Path | str) -> SequenceData:
    """Amazon Scientific with the UniSRec split files (RecBole `.inter` + `.text`).

    The files give, per user, every training prefix and one validation and one test row, with
    histories capped at 50 items. We rebuild each full sequence from them and check that
    `leave_one_out` of it reproduces the given validation and test rows exactly.
    """
    directory = Path(root) / "amazon-scientific"
    item_ids = _read_index(directory / "Scientific.item2index")
    user_ids = _read_index(directory / "Scientific.user2index")
    texts = _read_item_texts(directory / "Scientific.text")

    train_rows = _read_inter(directory / "Scientific.train.inter", len(item_ids), len(user_ids))
    valid_rows = _read_inter(directory / "Scientific.valid.inter", len(item_ids), len(user_ids))
    test_rows = _read_inter(directory / "Scientific.test.inter", len(item_ids), len(user_ids))
    valid_by_user = {user: (history, target) for user, history, target, _ in valid_rows}
    test_by_user = {user: (history, target) for user, history, target, _ in test_rows}
    train_by_user: dict[int, list[tuple[tuple[int, ...], int]]] = {}
    for user, history, target, _ in train_rows:
        train_by_user.setdefault(user, []).append((history, target))

    users, sequences = [], []
    for user in sorted(valid_by_user):
        if user not in test_by_user:
            raise DataFormatError(f"{directory}: user index {user} has a valid row but no test row")
        valid_history, valid_target = valid_by_user[user]
        test_history, test_target = test_by_user[user]
        train_sequence = _chain_prefixes(train_by_user.get(user, []), valid_history)
        sequence = [*train_sequence, valid_target, test_target]
        if tuple(sequence[:-2][-_RECBOLE_MAX_HISTORY:]) != valid_history or tuple(
            sequence[:-1][-_RECBOLE_MAX_HISTORY:]
        ) != test_history:
            raise DataFormatError(
                f"{directory}: the train, valid and test rows of user index {user} disagree"
            )
        users.append(user_ids[user])
        sequences.append(np.array(sequence, dtype=np.int64) + 1)  # files count from 0
    kinds = [np.full(len(sequence), _FILE_KIND, dtype=np.int64) for sequence in sequences]
    item_texts = [texts.get(item, "") for item in item_ids]
    return SequenceData(item_ids, users, sequences, kinds, item_texts)


_RECBOLE_MAX_HISTORY = 50


def _chain_prefixes(
    rows: list[tuple[tuple[int, ...], int]], valid_history: tuple[int, ...]
) -> list[int]:
    """Rebuild a training sequence from its (capped history -> next item) prefix rows.

    Without capping the validation history is the training sequence; with it, follow the rows:
    the row whose history is the last 50 items of what we have gives the next item.
    """
    if len(valid_history) < _RECBOLE_MAX_HISTORY or not rows:
        return list(valid_history)
    next_item = {history: target for history, target in rows}
    sequence = list(min(rows, key=lambda row: len(row[0]))[0])
    while (key := tuple(sequence[-_RECBOLE_MAX_HISTORY:])) in next_item:
        sequence.append(next_item.pop(key))
    return sequence


def _read_index(path: Path) -> list[str]:
    """`name<TAB>index` lines -> names ordered by index (indices must be 0..n-1)."""
    names: dict[int, str] = {}
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            name, tab, index = line.rstrip("\n").partition("\t")
            if not tab or not index.isdigit():
                raise DataFormatError(f"{path}:{line_number}: expected 'name<TAB>index'")
            names[int(index)] = name
    if sorted(names) != list(range(len(names))):
        raise DataFormatError(f"{path}: indices are not 0..{len(names) - 1}")
    return [names[index] for index in range(len(names))]


def _read_inter(
    path: Path, n_items: int, n_users: int
) -> list[tuple[int, tuple[int, ...], int, int]]:
    """RecBole rows `user<TAB>item item ...<TAB>target` -> (user, history, target, line number)."""
    rows = []
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if line_number == 1:
                continue  # header: user_id:token item_id_list:token_seq item_id:token
            fields = line.rstrip("\n").split("\t")
            try:
                user = int(fields[0])
                history = tuple(int(item) for item in fields[1].split())
                target = int(fields[2])
            except (IndexError, ValueError) as error:
                raise DataFormatError(
                    f"{path}:{line_number}: expected 'user<TAB>items<TAB>target' of integers"
                ) from error
            if len(fields) != 3 or not 0 <= user < n_users:
                raise DataFormatError(f"{path}:{line_number}: bad row or unknown user {user}")
            if not all(0 <= item < n_items for item in (*history, target)):
                raise DataFormatError(f"{path}:{line_number}: item index outside 0..{n_items - 1}")
            rows.append((user, history, target, line_number))
    return rows
