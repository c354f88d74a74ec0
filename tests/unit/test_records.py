"""Record makes the classes typing.NamedTuple makes, without importing typing or collections."""

import pickle
from typing import NamedTuple

import pytest

from nsdash.monitor.counters import Counters
from nsdash.system.records import Record


class Ours(Record):
    """A record."""

    a: int
    b: str = "x"
    c: float | None = None

    def twice(self) -> int:
        return self.a * 2


class Theirs(NamedTuple):
    """A record."""

    a: int
    b: str = "x"
    c: float | None = None

    def twice(self) -> int:
        return self.a * 2


@pytest.mark.parametrize("make", [lambda k: k(1), lambda k: k(1, "y"), lambda k: k(1, c=2.5),
                                  lambda k: k(a=3, b="z", c=None), lambda k: k._make([4, "w", 1.0])])
def test_a_record_behaves_as_a_namedtuple(make):
    ours, theirs = make(Ours), make(Theirs)
    assert tuple(ours) == tuple(theirs) and ours == theirs  # equal as tuples, like two namedtuples
    assert repr(ours).replace("Ours", "X") == repr(theirs).replace("Theirs", "X")
    assert (ours.a, ours.b, ours.c) == (theirs.a, theirs.b, theirs.c) and ours[1] == theirs[1]
    assert ours._asdict() == theirs._asdict() and ours.twice() == theirs.twice()
    assert tuple(ours._replace(b="q")) == tuple(theirs._replace(b="q"))
    assert pickle.loads(pickle.dumps(ours)) == ours and hash(ours) == hash(theirs)


def test_the_class_says_what_a_namedtuple_class_says():
    assert Ours._fields == Theirs._fields and Ours._field_defaults == Theirs._field_defaults
    assert Ours.__match_args__ == Theirs.__match_args__ and Ours.__doc__ == "A record."
    assert Ours.__qualname__ == "Ours" and Ours.__module__ == __name__
    assert isinstance(Ours(1), tuple)
    with pytest.raises(TypeError):
        Ours()  # a is required, as in Theirs()
    with pytest.raises(TypeError):
        Ours._make([1, 2])
    with pytest.raises(ValueError):
        Ours(1)._replace(d=1)
    with pytest.raises(AttributeError):
        Ours(1).a = 2
    with pytest.raises(AttributeError):
        Ours(1).d = 2  # no __dict__: __slots__ = ()


def test_the_monitor_records_are_made_by_it():
    c = Counters(tasks=3)
    assert c.cpu_ns is None and c._replace(memory=5).memory == 5 and len(c) == len(Counters._fields)
