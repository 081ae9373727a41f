"""Interaction logs -> sequences, the splits, and the benchmark file loaders (on tiny files)."""

import json

import numpy as np
import pytest

from recsys_core.data import (
    EVENT_KINDS,
    KIND_INDEX,
    DataFormatError,
    SequenceData,
    build_dataset,
    item_counts,
    leave_one_out,
    load_beauty,
    load_scientific,
    load_sequence_file,
    time_split,
)


def test_events_are_grouped_per_user_and_ordered_by_time():
    data = build_dataset([
        ("ann", "p2", "purchase", 30.0),
        ("bob", "p9", "view", 5.0),
        ("ann", "p1", "view", 10.0),
        ("ann", "p3", "impression", 20.0),  # not a model event kind: dropped
        ("ann", "p3", "add_to_cart", 20.0),
    ])
    assert data.users == ["ann", "bob"]
    assert data.item_ids == ["p2", "p9", "p1", "p3"]  # first appearance
    ann = [data.item_ids[index - 1] for index in data.sequences[0]]
    assert ann == ["p1", "p3", "p2"]
    assert data.kinds[0].tolist() == [KIND_INDEX["view"], KIND_INDEX["add_to_cart"],
                                      KIND_INDEX["purchase"]]
    assert KIND_INDEX[EVENT_KINDS[0]] == 1  # 0 is padding
    assert data.timestamps[0].tolist() == [10.0, 20.0, 30.0]


def test_equal_timestamps_keep_input_order():
    data = build_dataset([("u", "b", "view", 1.0), ("u", "a", "view", 1.0)])
    assert [data.item_ids[i - 1] for i in data.sequences[0]] == ["b", "a"]


def test_a_fixed_catalogue_sets_indices_and_drops_unknown_items():
    data = build_dataset(
        [("u", "gone", "view", 1.0), ("u", "b", "view", 2.0), ("v", "a", "purchase", 3.0)],
        item_ids=["a", "b", "c"],
        item_texts={"a": "apple", "c": "cherry"},
    )
    assert data.item_ids == ["a", "b", "c"]
    assert data.sequences[0].tolist() == [2]
    assert data.item_texts == ["apple", "", "cherry"]
    assert data.n_items == 3


def test_short_sequences_can_be_dropped():
    rows = [("u", "a", "view", 1.0), ("v", "a", "view", 1.0), ("v", "b", "view", 2.0)]
    assert build_dataset(rows, min_sequence_length=2).users == ["v"]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (("u", "a", "view"), "interaction 2"),
        (("u", "a", "view", "noon"), "timestamp 'noon'"),
        (("u", "a", "view", float("nan")), "timestamp nan is not a finite number"),
    ],
)
def test_malformed_interactions_name_the_row(row, message):
    with pytest.raises(DataFormatError, match=message):
        build_dataset([("u", "a", "view", 1.0), row])


def test_inconsistent_sequence_data_is_refused():
    with pytest.raises(ValueError, match="outside 1..2"):
        SequenceData(["a", "b"], ["u"], [np.array([3])], [np.array([1])])


def make_data(sequences):
    return SequenceData(
        item_ids=[str(i) for i in range(1, 10)],
        users=[f"u{i}" for i in range(len(sequences))],
        sequences=[np.array(s) for s in sequences],
        kinds=[np.arange(1, len(s) + 1) for s in sequences],
    )


def test_leave_one_out_holds_out_the_last_two_items():
    split = leave_one_out(make_data([[1, 2, 3, 4], [5, 6], [7, 8, 9]]))
    assert [s.tolist() for s in split.train] == [[1, 2], [5, 6], [7]]
    assert [h.tolist() for h in split.valid_history] == [[1, 2], [7]]
    assert split.valid_target.tolist() == [3, 8]
    assert [h.tolist() for h in split.test_history] == [[1, 2, 3], [7, 8]]
    assert split.test_target.tolist() == [4, 9]
    assert [k.tolist() for k in split.test_kinds] == [[1, 2, 3], [1, 2]]
    assert split.test_users.tolist() == [0, 2]  # the 2-item user is only trained on


def test_time_split_holds_out_the_first_event_after_the_cutoff():
    data = build_dataset([
        ("old", "a", "view", 1.0), ("old", "b", "view", 2.0),
        ("both", "a", "view", 1.0), ("both", "c", "view", 5.0), ("both", "b", "view", 6.0),
        ("new", "c", "view", 7.0),
    ])
    split = time_split(data, cutoff_timestamp=2.0)
    names = lambda seq: [data.item_ids[i - 1] for i in seq]  # noqa: E731
    assert [names(s) for s in split.train] == [["a", "b"], ["a"]]
    assert [names(h) for h in split.test_history] == [["a"]]
    assert names(split.test_target) == ["c"]
    assert [data.users[i] for i in split.test_users] == ["both"]


def test_item_counts():
    counts = item_counts([np.array([1, 2, 2]), np.array([3])], n_items=4)
    assert counts.tolist() == [0, 1, 2, 1, 0]


def test_sequence_file_with_item_texts(tmp_path):
    (tmp_path / "seq.txt").write_text("u1 10 20 30\nu2 20 40\n")
    (tmp_path / "text.tsv").write_text("10\tRed lipstick\n40\tBlue jeans\n99\tNew product\n")
    data = load_sequence_file(tmp_path / "seq.txt", tmp_path / "text.tsv")
    assert data.item_ids == ["10", "20", "30", "40", "99"]  # 99 has text but no interactions
    assert data.item_texts == ["Red lipstick", "", "", "Blue jeans", "New product"]
    assert data.sequences[1].tolist() == [2, 4]
    assert data.kinds[0].tolist() == [KIND_INDEX["purchase"]] * 3


@pytest.mark.parametrize(
    ("lines", "message"),
    [("u1 1 2\nu2\n", r"seq.txt:2: expected 'user item"), ("u1 1\nu1 2\n", "more than one line")],
)
def test_malformed_sequence_files_name_the_line(tmp_path, lines, message):
    (tmp_path / "seq.txt").write_text(lines)
    with pytest.raises(DataFormatError, match=message):
        load_sequence_file(tmp_path / "seq.txt")


def test_malformed_item_text_file_names_the_line(tmp_path):
    (tmp_path / "seq.txt").write_text("u1 1 2\n")
    (tmp_path / "text.tsv").write_text("1\tfine\n2 no tab here\n")
    with pytest.raises(DataFormatError, match=r"text.tsv:2: expected 'item_id<TAB>text'"):
        load_sequence_file(tmp_path / "seq.txt", tmp_path / "text.tsv")


def test_beauty_items_get_their_attribute_ids_as_text(tmp_path):
    folder = tmp_path / "amazon-beauty"
    folder.mkdir()
    (folder / "Beauty.txt").write_text("1 1 2 3\n2 2 3 4\n")
    (folder / "Beauty_item2attributes.json").write_text(json.dumps({"1": [7, 8], "3": [8]}))
    data = load_beauty(tmp_path)
    assert data.item_texts == ["attribute 7, attribute 8", "", "attribute 8", ""]


def recbole_row(user, sequence, end, cap=50):
    """`user<TAB>history<TAB>target` for predicting sequence[end] from the capped history."""
    history = " ".join(map(str, sequence[max(0, end - cap):end]))
    return f"{user}\t{history}\t{sequence[end]}\n"


def write_recbole(folder, sequences, item_count):
    """The UniSRec split layout: every training prefix, one valid and one test row per user."""
    header = "user_id:token\titem_id_list:token_seq\titem_id:token\n"
    train, valid, test = [header], [header], [header]
    for user, sequence in enumerate(sequences):
        train += [recbole_row(user, sequence, end) for end in range(len(sequence) - 3, 0, -1)]
        valid.append(recbole_row(user, sequence, len(sequence) - 2))
        test.append(recbole_row(user, sequence, len(sequence) - 1))
    (folder / "Scientific.train.inter").write_text("".join(train))
    (folder / "Scientific.valid.inter").write_text("".join(valid))
    (folder / "Scientific.test.inter").write_text("".join(test))
    items = range(item_count)
    (folder / "Scientific.item2index").write_text("".join(f"asin{i}\t{i}\n" for i in items))
    (folder / "Scientific.user2index").write_text(
        "".join(f"user{u}\t{u}\n" for u in range(len(sequences))))
    (folder / "Scientific.text").write_text(
        "item_id:token\ttext:token_seq\n" + "".join(f"asin{i}\ttitle {i}\n" for i in items))


def test_scientific_sequences_are_rebuilt_from_capped_split_files(tmp_path):
    folder = tmp_path / "amazon-scientific"
    folder.mkdir()
    long_user = [i % 70 for i in range(60)]  # longer than the 50-item cap
    write_recbole(folder, [[0, 1, 2, 3, 4], long_user], item_count=70)
    data = load_scientific(tmp_path)
    assert data.users == ["user0", "user1"]
    assert (data.sequences[0] - 1).tolist() == [0, 1, 2, 3, 4]
    assert (data.sequences[1] - 1).tolist() == long_user
    assert data.item_ids[3] == "asin3" and data.item_texts[3] == "title 3"
    split = leave_one_out(data)
    assert (split.test_target - 1).tolist() == [4, long_user[-1]]


def test_scientific_rows_that_disagree_are_refused(tmp_path):
    folder = tmp_path / "amazon-scientific"
    folder.mkdir()
    write_recbole(folder, [[0, 1, 2, 3, 4]], item_count=5)
    test_file = folder / "Scientific.test.inter"
    test_file.write_text(test_file.read_text().replace("0 1 2 3\t4", "0 1 2 2\t4"))
    with pytest.raises(DataFormatError, match="disagree"):
        load_scientific(tmp_path)


def test_scientific_item_outside_the_index_names_the_line(tmp_path):
    folder = tmp_path / "amazon-scientific"
    folder.mkdir()
    write_recbole(folder, [[0, 1, 2, 3, 4]], item_count=5)
    test_file = folder / "Scientific.test.inter"
    test_file.write_text(test_file.read_text().replace("0 1 2 3\t4", "0 1 2 3\t9"))
    with pytest.raises(DataFormatError, match=r"Scientific.test.inter:2: item index outside"):
        load_scientific(tmp_path)
