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


def test_a_record_class_is_made_without_compiling_anything(monkeypatch):
    """Up to twelve fields the constructor is a written-out one with the fields' names (no exec:
    it compiled source for each class `nsdash cgtop` imports); past that, exec as namedtuple."""
    import builtins

    def refused(*args, **kwargs):
        raise AssertionError("compiled")

    monkeypatch.setattr(builtins, "exec", refused)

    class Twelve(Record):
        f0: int
        f1: int
        f2: int
        f3: int
        f4: int
        f5: int
        f6: int
        f7: int
        f8: int
        f9: int
        f10: int = 10
        f11: int = 11

    made = Twelve(0, 1, 2, 3, 4, 5, 6, 7, 8, f9=9, f11=-1)
    assert made == tuple(range(11)) + (-1,) and made.f11 == -1 and made.f9 == 9
    assert Twelve.__new__.__code__.co_varnames == ("_cls", *Twelve._fields)
    with pytest.raises(TypeError, match="unexpected keyword argument 'nope'"):
        Twelve(*range(10), nope=1)
    with pytest.raises(TypeError, match="missing 1 required positional argument: 'f9'"):
        Twelve(*range(9))
    monkeypatch.undo()
    names = [f"x{i}" for i in range(14)]
    ns = {"__annotations__": dict.fromkeys(names, int), "x13": 13}
    Wide = type(Record)("Wide", (Record,), ns)  # past the written-out ones: exec, as namedtuple
    assert Wide(*range(13)) == tuple(range(14)) and Wide(*range(13)).x13 == 13
    assert Wide.__new__.__qualname__ == "Wide.__new__" == Twelve.__new__.__qualname__.replace("Twelve", "Wide")
