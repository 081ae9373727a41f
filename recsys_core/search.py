"""Product search ranking: words (BM25), meaning (text embeddings), typos, fusion, personal touch.

Pure numpy, no Django: the plugin's search service and ``benchmarks.search`` call the same
functions, so the figure in BENCHMARKS.md measures the code that serves shoppers.

The pieces, in the order a query meets them:

* ``SpellingCorrector`` replaces a query word that no product uses by the closest word that
  products do use (character trigrams find candidates, edit distance picks one);
* ``KeywordIndex`` scores every product with BM25 (title words count twice, light plural
  stemming), one posting-list pass per query word;
* ``DenseIndex`` scores every product by the cosine of its text embedding with the query's (one
  float32 matrix-vector product over pre-normalised rows);
* ``fuse`` mixes the two after putting both on a 0..1 scale, and ``personalise`` adds a lightly
  weighted shopper preference to the fused scores of the best candidates.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

_WORD = re.compile(r"[^\W_]+")

# Defaults chosen by 2-fold cross-validation on the CrowdFlower queries (benchmarks.search).
DEFAULT_KEYWORD_WEIGHT = 0.3
DEFAULT_TITLE_WEIGHT = 2
# Catalogues larger than this keep REDUCED_DIMS principal directions of their embeddings
# (smaller ones are fast enough whole, and too few products to estimate the directions well).
REDUCE_ABOVE = 20_000
REDUCED_DIMS = 128


def stem(word: str) -> str:
    """Fold English plurals onto the singular ("batteries" -> "battery", "boxes" -> "box").

    Deliberately light: queries and products go through the same function, so a wrong stem
    ("series" -> "sery") still matches itself, while an aggressive stemmer would merge words
    that shoppers mean differently ("organic" / "organ").
    """
    if len(word) <= 3 or word.isdigit():
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "sses", "xes", "zes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def fold(text: str) -> str:
    """Lower case without accents ("Café" -> "cafe"): shoppers often type words without them."""
    text = text.lower()
    if text.isascii():
        return text
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def words(text: str, *, fold_accents: bool = True) -> list[str]:
    """Lower-case words (letters and digits) in order, unstemmed; accents folded by default."""
    return _WORD.findall(fold(text) if fold_accents else text.lower())


def tokenize(text: str, *, stemmed: bool = True) -> list[str]:
    """The terms a text is indexed and searched by."""
    found = words(text)
    return [stem(word) for word in found] if stemmed else found


class KeywordIndex:
    """Okapi BM25 over product texts, with the title counted ``title_weight`` times.

    Postings are numpy arrays of (product position, precomputed BM25 weight), so a query costs
    one vectorised add per query term: a few milliseconds at 100,000 products.
    """

    def __init__(
        self,
        documents: Sequence[str],
        *,
        titles: Sequence[str] | None = None,
        title_weight: int = DEFAULT_TITLE_WEIGHT,
        k1: float = 1.2,
        b: float = 0.75,
        stemmed: bool = True,
    ) -> None:
        if titles is not None and len(titles) != len(documents):
            raise ValueError(f"{len(titles)} titles for {len(documents)} documents")
        if title_weight < 1:
            raise ValueError(f"title_weight must be at least 1, got {title_weight}")
        self.stemmed = stemmed
        self.n_documents = len(documents)
        term_ids: dict[str, int] = {}
        rows: list[int] = []
        cols: list[int] = []
        counts: list[int] = []
        lengths = np.zeros(self.n_documents, dtype=np.float32)
        stems: dict[str, str] = {}  # each distinct word is stemmed once
        vocabulary: Counter[str] = Counter()
        for position, document in enumerate(documents):
            terms = words(document)
            vocabulary.update(set(terms))
            if titles is not None and title_weight > 1:
                terms += words(titles[position]) * (title_weight - 1)
            if stemmed:
                terms = [stems.get(w) or stems.setdefault(w, stem(w)) for w in terms]
            lengths[position] = len(terms)
            for term, count in Counter(terms).items():
                rows.append(term_ids.setdefault(term, len(term_ids)))
                cols.append(position)
                counts.append(count)
        # Unstemmed words -> number of documents using them: what typos are corrected towards.
        self.word_frequency: dict[str, int] = dict(vocabulary)
        term_of = np.array(rows, dtype=np.int64)
        order = np.argsort(term_of, kind="stable")
        docs = np.array(cols, dtype=np.int64)[order]
        tf = np.array(counts, dtype=np.float32)[order]
        bounds = np.searchsorted(term_of[order], np.arange(len(term_ids) + 1))
        df = np.diff(bounds)
        average = float(lengths.mean()) if self.n_documents and lengths.mean() > 0 else 1.0
        norm = k1 * (1 - b + b * lengths[docs] / average)
        idf = np.log1p((self.n_documents - df + 0.5) / (df + 0.5)).astype(np.float32)
        weights = np.repeat(idf, df) * tf * (k1 + 1) / (tf + norm)
        self._postings: dict[str, tuple[np.ndarray, np.ndarray]] = {
            term: (docs[bounds[i] : bounds[i + 1]], weights[bounds[i] : bounds[i + 1]])
            for term, i in term_ids.items()
        }

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every document for the query (0 where no query term occurs)."""
        scores = np.zeros(self.n_documents, dtype=np.float32)
        for term in tokenize(query, stemmed=self.stemmed):
            posting = self._postings.get(term)
            if posting is not None:
                docs, weights = posting
                scores[docs] += weights
        return scores


def edit_distance(a: str, b: str, limit: int) -> int:
    """Damerau-Levenshtein distance (adjacent swaps count 1), or ``limit + 1`` once it exceeds
    ``limit`` (typo candidates are only ever 1 or 2 edits away)."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i] + [0] * len(b)
        for j, cb in enumerate(b, start=1):
            cost = 0 if ca == cb else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                current[j] = min(current[j], previous2[j - 2] + 1)
        if min(current) > limit:
            return limit + 1
        previous2, previous = previous, current
    return previous[-1]


def _common_subsequence(a: str, b: str) -> int:
    """Length of the longest common subsequence of two short words."""
    previous = [0] * (len(b) + 1)
    for ca in a:
        current = [0]
        for j, cb in enumerate(b, start=1):
            current.append(previous[j - 1] + 1 if ca == cb else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def _trigrams(word: str) -> set[str]:
    padded = f"^{word}$"
    return {padded[i : i + 3] for i in range(len(padded) - 2)}


@dataclass(frozen=True)
class Correction:
    text: str  # the query with unknown words replaced (or the query itself)
    changed: bool


class SpellingCorrector:
    """Replace words no product uses by the nearest word products do use.

    ``vocabulary`` maps known words to how many products use them (the commoner of two equally
    close words wins). Words shorter than ``min_length`` and numbers are left alone: "tv" or
    "32" are not typos of anything, and a one-letter edit of a short word is another word.
    """

    def __init__(self, vocabulary: Mapping[str, int], *, min_length: int = 4) -> None:
        self.vocabulary = dict(vocabulary)
        self.min_length = min_length
        self._stems = {stem(word) for word in self.vocabulary}
        self._by_trigram: dict[str, list[str]] = {}
        for word in self.vocabulary:
            if len(word) >= min_length - 1 and not word.isdigit():
                for gram in _trigrams(word):
                    self._by_trigram.setdefault(gram, []).append(word)

    def correct_word(self, word: str) -> str:
        word = fold(word)
        if (
            word in self.vocabulary or stem(word) in self._stems
            or len(word) < self.min_length or not word.isalpha()
        ):
            return word
        limit = 1 if len(word) < 7 else 2
        shared: Counter[str] = Counter()
        for gram in _trigrams(word):
            shared.update(self._by_trigram.get(gram, ()))
        best, best_key = word, (limit + 1, 0, 0, "")
        # Candidates share trigrams with the typo; each edit destroys at most three of them.
        needed = max(1, len(word) - 2 - 3 * limit)
        for candidate, common in shared.most_common(200):
            if common < needed:
                break
            distance = edit_distance(word, candidate, limit)
            # Among equally close words, the one keeping most of the typed letters in order
            # wins (a dropped letter is the commonest typo), then the commoner one, then the
            # first in alphabetical order (so that the answer never depends on hash order).
            key = (distance, -_common_subsequence(word, candidate), -self.vocabulary[candidate],
                   candidate)
            if distance <= limit and key < best_key:
                best, best_key = candidate, key
        return best

    def correct(self, query: str) -> Correction:
        """The query with each unknown word corrected; other characters kept as typed."""
        changed = False

        def replace(match: re.Match[str]) -> str:
            nonlocal changed
            original = match.group(0)
            fixed = self.correct_word(original)
            if fixed != fold(original):
                changed = True
                return fixed
            return original

        text = _WORD.sub(replace, query)
        return Correction(text=text, changed=changed)


def normalise_rows(matrix: np.ndarray) -> np.ndarray:
    """float32 rows of unit length (zero rows stay zero): cosine becomes a dot product."""
    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.ascontiguousarray(matrix / np.maximum(norms, 1e-12), dtype=np.float32)


class DenseIndex:
    """Cosine similarity of every product's text embedding with a query embedding.

    ``dims``: keep only that many principal directions of the catalogue's embeddings. Scoring
    reads the whole matrix for every query, so its size is the query's cost: 128 of MiniLM's
    384 dimensions make it three times smaller and faster, at no measurable loss of search
    quality (benchmarks.search shows both).
    """

    def __init__(self, embeddings: np.ndarray, *, dims: int | None = None) -> None:
        if embeddings.ndim != 2:
            raise ValueError(f"embeddings must be [n, dim], got shape {embeddings.shape}")
        self.dim = int(embeddings.shape[1])
        matrix = normalise_rows(embeddings)
        self.projection: np.ndarray | None = None
        if dims is not None and dims < self.dim:
            self.projection = principal_axes(matrix, dims)
            matrix = normalise_rows(matrix @ self.projection)
        self.matrix = matrix

    def scores(self, query_vector: np.ndarray) -> np.ndarray:
        query = np.asarray(query_vector, dtype=np.float32).reshape(-1)
        if query.shape[0] != self.dim:
            raise ValueError(f"query vector has {query.shape[0]} dimensions, index {self.dim}")
        if self.projection is not None:
            query = query @ self.projection
        norm = float(np.linalg.norm(query))
        return self.matrix @ (query / norm if norm > 0 else query)


def principal_axes(matrix: np.ndarray, dims: int) -> np.ndarray:
    """[dim, dims] float32: the directions along which the rows vary most (PCA)."""
    mean = matrix.mean(axis=0, dtype=np.float64)
    covariance = (matrix.T @ matrix).astype(np.float64) / len(matrix) - np.outer(mean, mean)
    _, vectors = np.linalg.eigh(covariance)  # ascending eigenvalues
    return np.ascontiguousarray(vectors[:, ::-1][:, :dims], dtype=np.float32)


def scale01(scores: np.ndarray) -> np.ndarray:
    """Min-max to 0..1; a constant vector (no signal) becomes all zeros."""
    scores = np.asarray(scores, dtype=np.float32)
    if scores.size == 0:
        return scores
    low, high = float(scores.min()), float(scores.max())
    if high - low <= 1e-12:
        return np.zeros_like(scores)
    return (scores - low) / (high - low)


def fuse(
    keyword: np.ndarray | None, dense: np.ndarray | None,
    keyword_weight: float = DEFAULT_KEYWORD_WEIGHT,
) -> np.ndarray:
    """keyword_weight * scaled BM25 + (1 - keyword_weight) * scaled cosine.

    Each signal is min-max scaled over the whole catalogue first (BM25 is unbounded and its
    range depends on the query; cosines crowd into a narrow band), so the weight means the same
    for every query. A missing signal (no embeddings yet) leaves the other one alone.
    """
    if not 0.0 <= keyword_weight <= 1.0:
        raise ValueError(f"keyword_weight must be in [0, 1], got {keyword_weight}")
    if keyword is None and dense is None:
        raise ValueError("fuse needs at least one of keyword and dense scores")
    if dense is None:
        return scale01(keyword)
    if keyword is None:
        return scale01(dense)
    if keyword.shape != dense.shape:
        raise ValueError(f"keyword scores {keyword.shape} and dense scores {dense.shape} differ")
    return keyword_weight * scale01(keyword) + (1.0 - keyword_weight) * scale01(dense)


def personalise(scores: np.ndarray, preference: np.ndarray, weight: float) -> np.ndarray:
    """Candidates' fused scores plus ``weight`` x the shopper's preference scaled to 0..1.

    ``preference`` is any score of the same candidates (the recommender's, or a category
    affinity); -inf (a product the model does not know) counts as the least preferred. The
    weight is small on purpose: the query decides what is relevant, the shopper only breaks
    near-ties among relevant products.
    """
    preference = np.asarray(preference, dtype=np.float32)
    if preference.shape != scores.shape:
        raise ValueError(f"preference {preference.shape} and scores {scores.shape} differ")
    finite = np.isfinite(preference)
    if weight == 0 or not finite.any():
        return scores.astype(np.float32)
    filled = np.where(finite, preference, preference[finite].min())
    return (scores + weight * scale01(filled)).astype(np.float32)


def top_k(scores: np.ndarray, k: int, mask: np.ndarray | None = None) -> np.ndarray:
    """Indices of the k best scores, best first (ties by position); ``mask`` selects allowed."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    k = min(k, scores.shape[0])
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    head = np.argpartition(-scores, k - 1)[:k] if k < scores.shape[0] else np.arange(k)
    order = np.lexsort((head, -scores[head]))
    found = head[order]
    if mask is not None:
        found = found[np.isfinite(scores[found])]
    return found


def dense_index(embeddings: np.ndarray) -> DenseIndex:
    """The catalogue's DenseIndex, reduced to REDUCED_DIMS above REDUCE_ABOVE products."""
    return DenseIndex(embeddings, dims=REDUCED_DIMS if len(embeddings) > REDUCE_ABOVE else None)


@contextmanager
def single_threaded() -> Iterator[None]:
    """Run a short torch computation (one query's embedding) on one intra-op thread.

    A query is a handful of tokens: splitting it over threads gains nothing, and on a busy
    machine the threads wait for each other (measured: 2 threads on a loaded 2-core machine made
    a query embedding 25 times slower than 1). The previous setting is restored afterwards.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@dataclass(frozen=True)
class Ranked:
    indices: np.ndarray  # catalogue positions, best first
    scores: np.ndarray  # their fused scores


class HybridSearch:
    """Words and meaning over one catalogue: what the service and the benchmark rank with."""

    def __init__(
        self,
        documents: Sequence[str],
        embeddings: np.ndarray | None,
        *,
        titles: Sequence[str] | None = None,
        keyword_weight: float = DEFAULT_KEYWORD_WEIGHT,
    ) -> None:
        if embeddings is not None and len(embeddings) != len(documents):
            raise ValueError(f"{len(embeddings)} embeddings for {len(documents)} documents")
        self.keyword = KeywordIndex(documents, titles=titles)
        self.dense = None if embeddings is None else dense_index(embeddings)
        # Typos are corrected against title and text words alike: a shopper may type a word
        # that only a description uses ("waterproof"), and it should not be "corrected" away.
        self.corrector = SpellingCorrector(self.keyword.word_frequency)
        self.keyword_weight = keyword_weight

    def __len__(self) -> int:
        return self.keyword.n_documents

    def set_embeddings(self, embeddings: np.ndarray) -> None:
        """Swap in new embeddings (the rest of a large catalogue, embedded later)."""
        if len(embeddings) != len(self):
            raise ValueError(f"{len(embeddings)} embeddings for {len(self)} documents")
        self.dense = dense_index(embeddings)

    def correct(self, query: str) -> Correction:
        return self.corrector.correct(query)

    def fused_scores(
        self, query: str, query_vector: np.ndarray | None, *,
        keyword_scores: np.ndarray | None = None, keyword_weight: float | None = None,
    ) -> np.ndarray:
        """Fused score of every product. ``keyword_scores`` replaces BM25 (e.g. a database's
        full-text rank scattered over the catalogue); no vector means words only."""
        if keyword_scores is None:
            keyword_scores = self.keyword.scores(query)
        dense = None
        if self.dense is not None and query_vector is not None:
            dense = self.dense.scores(query_vector)
        weight = self.keyword_weight if keyword_weight is None else keyword_weight
        return fuse(keyword_scores, dense, weight)

    def search(
        self, query: str, query_vector: np.ndarray | None, k: int, *,
        mask: np.ndarray | None = None, keyword_scores: np.ndarray | None = None,
    ) -> Ranked:
        """The k best products for a query whose typos have already been corrected."""
        scores = self.fused_scores(query, query_vector, keyword_scores=keyword_scores)
        found = top_k(scores, k, mask)
        return Ranked(found, scores[found])


class Suggester:
    """Completions for a partly typed query: popular past queries first, then product titles.

    Titles are indexed once from the start of each of their words, sorted, so a prefix is found
    by binary search rather than a scan of the catalogue. Past queries change more often than
    titles, so they are passed to each call (most popular first).
    """

    def __init__(self, titles: Iterable[str]) -> None:
        entries: set[tuple[str, str]] = set()
        for title in titles:
            clean = " ".join(title.split())
            lowered = clean.lower()
            for match in _WORD.finditer(lowered):
                entries.add((lowered[match.start() :], clean))
        self._titles = sorted(entries)

    def suggest(
        self, prefix: str, limit: int = 8, *, popular_queries: Sequence[str] = ()
    ) -> list[str]:
        prefix = " ".join(prefix.lower().split())
        if not prefix or limit < 1:
            return []
        found: dict[str, str] = {}
        for query in popular_queries:
            clean = " ".join(query.split())
            if clean.lower().startswith(prefix):
                found.setdefault(clean.lower(), clean)
                if len(found) >= limit:
                    return list(found.values())
        start = _bisect_left(self._titles, prefix)
        for lowered_tail, title in self._titles[start:]:
            if not lowered_tail.startswith(prefix):
                break
            found.setdefault(title.lower(), title)
            if len(found) >= limit:
                break
        return list(found.values())


def _bisect_left(entries: list[tuple[str, str]], prefix: str) -> int:
    low, high = 0, len(entries)
    while low < high:
        middle = (low + high) // 2
        if entries[middle][0] < prefix:
            low = middle + 1
        else:
            high = middle
    return low


def graded_ndcg(ranking: Sequence[str], relevance: Mapping[str, int], k: int = 10) -> float:
    """NDCG@k with graded labels 1..4 (gain 2^(label-1) - 1; unjudged products gain 0).

    The ideal ordering is taken over the judged products; a query with no relevant judged
    product scores 0.
    """
    def gain(label: int) -> float:
        return 2.0 ** (label - 1) - 1.0

    dcg = sum(gain(relevance.get(item, 1)) / math.log2(i + 2) for i, item in enumerate(ranking[:k]))
    ideal = sorted((gain(label) for label in relevance.values()), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0
