"""Data loading: bundled and synthetic sets, local files, and the split."""

import numpy as np
import pytest
import torch

from gradexp import data as datasets
from gradexp import datafiles
from gradexp.errors import ConfigError


def split(arrays, **kw):
    opts = {"eval_fraction": 0.25, "standardize": True, "split_seed": 0} | kw
    return datasets.split(arrays, **opts, device=torch.device("cpu"), dtype=torch.float64)


@pytest.mark.parametrize("name", datasets.SKLEARN)
def test_bundled_sets_load_offline(name):
    d = split(datasets.sklearn_dataset(name))
    n = len(d.x_train) + len(d.x_eval)
    sizes = {"digits": 1797, "iris": 150, "breast_cancer": 569, "wine": 178, "diabetes": 442}
    assert n == sizes[name] and len(d.x_eval) == round(0.25 * n)
    assert d.task == ("regression" if name == "diabetes" else "classification")


def test_standardisation_is_fitted_on_the_training_split():
    d = split(datasets.sklearn_dataset("wine"))
    np.testing.assert_allclose(d.x_train.mean(0).numpy(), 0, atol=1e-12)
    np.testing.assert_allclose(d.x_train.std(0, unbiased=False).numpy(), 1, atol=1e-12)
    assert d.x_eval.mean(0).abs().max() > 1e-3  # the eval part is transformed, not refitted


def test_split_is_seeded_and_disjoint():
    a = datasets.sklearn_dataset("iris")
    d1, d2, d3 = split(a), split(a), split(a, split_seed=1)
    assert torch.equal(d1.x_train, d2.x_train) and not torch.equal(d1.x_train, d3.x_train)
    rows = {tuple(r) for r in torch.cat([d1.x_train, d1.x_eval]).tolist()}
    assert len(rows) == len(d1.x_train) + len(d1.x_eval) - 1  # iris has one duplicated row


def test_synthetic_regression_keeps_its_truth():
    a = datasets.regression(n=2000, features=3, noise=0.0, seed=0)
    np.testing.assert_allclose(a.x @ a.meta["true_w"] + a.meta["true_b"], a.y)


def test_csv_with_arbitrary_labels(tmp_path):
    f = tmp_path / "d.csv"
    f.write_text("x1,x2,kind\n0.5,1,7\n-1,2,3\n2,0.25,7\n1,1,3\n")
    a = datafiles.from_file(str(f), "kind")
    assert a.task == "classification" and a.x.shape == (4, 2)
    d = split(a, eval_fraction=0.0, standardize=False)
    assert d.num_classes == 2 and set(d.y_train.tolist()) == {0, 1}


def test_npz_columns_and_matrix(tmp_path):
    f = tmp_path / "d.npz"
    x = np.arange(12.0).reshape(6, 2)
    np.savez(f, features=x, extra=np.ones(6), target=np.linspace(0, 1, 6))
    a = datafiles.from_file(str(f), "target")
    assert a.task == "regression" and a.x.shape == (6, 3)
    np.testing.assert_array_equal(a.x[:, :2], x)


@pytest.mark.parametrize(
    ("content", "target", "needle"),
    [
        (None, "y", "no such file"),
        ("", "y", "is empty"),
        ("a,y\n1,2\n", "label", "not a column"),
        ("a,y\n1,2\nfoo,3\n", "y", "'foo' is not a number"),
        ("a,y\n1,2\n1\n", "y", "line 3 has 1 fields"),
        ("a,y\n1,nan\n", "y", "all values must be finite"),
        ("a,y\n1,inf\n", "y", "all values must be finite"),
        ("a,y\n", "y", "no rows"),
        ("y\n1\n2\n", "y", "no feature columns"),
    ],
)
def test_bad_files_name_the_key_and_the_problem(tmp_path, content, target, needle):
    f = tmp_path / "bad.csv"
    if content is not None:
        f.write_text(content)
    with pytest.raises(ConfigError) as e:
        datafiles.from_file(str(f), target)
    assert needle in str(e.value)
    assert str(e.value).startswith(("path=", "target=")) and "\n" not in str(e.value)


@pytest.mark.parametrize("name", datasets.SKLEARN)
def test_bundled_readers_equal_scikit_learns_loaders(name):
    """gradexp reads the files scikit-learn ships without importing it; the arrays must be the
    ones its loaders return, bit for bit."""
    from sklearn import datasets as sk

    datasets._bundled.cache_clear()
    x, y = datasets._bundled(name)
    bunch = getattr(sk, f"load_{name}")()
    np.testing.assert_array_equal(x, bunch.data)
    np.testing.assert_array_equal(y, bunch.target)
    assert x.dtype == np.float64 and not x.flags.writeable


PLAIN = "a,b,label\n1.5,2,0\n-3,4e-1,1\n5,6,0\n"
AS_PEOPLE_HAVE_THEM = {
    "bom": "\ufeff" + PLAIN,
    "blank lines": "\n" + PLAIN.replace("\n-3", "\n\n-3") + "\n\n",
    "crlf": PLAIN.replace("\n", "\r\n"),
    "semicolons, decimal commas": "a;b;label\n1,5;2;0\n-3;0,4;1\n5;6;0\n",
    "tabs": PLAIN.replace(",", "\t"),
    "pipes, spaces": PLAIN.replace(",", " | "),
    "quotes": '"a","b","label"\n"1.5","2","0"\n-3,"4e-1",1\n5,6,"0"\n',
    "empty last column": PLAIN.replace("\n", ",\n"),
}


@pytest.mark.parametrize("name", list(AS_PEOPLE_HAVE_THEM))
def test_csv_files_as_people_have_them_read_as_the_plain_one(tmp_path, name):
    plain, other = tmp_path / "plain.csv", tmp_path / "other.csv"
    plain.write_text(PLAIN)
    other.write_bytes(AS_PEOPLE_HAVE_THEM[name].encode())
    a, b = (datafiles.from_file(str(f), "label") for f in (plain, other))
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)
    assert a.meta["columns"] == b.meta["columns"] == ["a", "b"] and b.task == "classification"


def test_class_labels_as_words_map_to_sorted_classes_and_are_recorded(tmp_path):
    f = tmp_path / "pets.csv"
    f.write_text('w,h,kind\n1,2,dog\n3,4,cat\n5,6,dog\n7,8,"guinea pig"\n')
    a = datafiles.from_file(str(f), "kind")
    assert a.task == "classification" and a.meta["classes"] == ["cat", "dog", "guinea pig"]
    np.testing.assert_array_equal(a.y, [1, 0, 1, 2])
    d = split(a, eval_fraction=0.0)
    assert d.meta["classes"] == ["cat", "dog", "guinea pig"] and d.num_classes == 3


def test_numeric_labels_record_which_class_is_which(tmp_path):
    f = tmp_path / "digits.csv"
    f.write_text("x,y\n1,3\n2,7\n3,9\n4,3\n")
    d = split(datafiles.from_file(str(f), "y"), eval_fraction=0.0)
    assert d.meta["classes"] == [3, 7, 9]
