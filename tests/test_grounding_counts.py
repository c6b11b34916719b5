"""Grounding counts each object once: RSICap-style sentences with the per-class counts a careful reader states.

Expected values: an int is the count the caption states; None: the class is named but no count is stated
("the ships are moored", "two of the ships ..."); a string: a vague quantifier, checked as written. Every
class the caption names is listed, so a class read by mistake fails the test too.
"""
import pytest
from test_grounding import human  # noqa: F401  the fixture: filename -> real RSICap / RSIEval caption

from rsmoe.evaluation.grounding import VEHICLE, ground, mentions

SV, LV = "small-vehicle", "large-vehicle"


def counts(caption):
    """class -> the count `mentions` reads (the vague quantifier instead when the claim is vague)."""
    return {c: m.quantifier if m.kind == "vague" else m.count for c, m in mentions(caption).items()}


WRITTEN = [
    # the issue: re-mentions of one object are not new objects
    ("The image is of a small ship. The ship is a small vessel. The ship is a small vessel.", {"ship": 1}),
    ("There is a ship on the river. The ship is a small vessel.", {"ship": 1}),
    # predicate nominatives classify an object already named
    ("There is a plane on the apron. It is a white plane.", {"plane": 1}),
    ("There's a plane next to the terminal. It's a large passenger jet.", {"plane": 1}),
    ("A white vessel is moored along the shore, and it appears to be a small fishing boat.", {"ship": 1}),
    ("Two vehicles are parked on the road; the larger vehicle is a truck.", {VEHICLE: 2, LV: 1}),
    ("The object on the runway is a plane.", {"plane": 1}),  # named by its predicate alone: one object
    ("One of the ships is a tanker, and another is a ferry.", {"ship": None}),  # two or more, not said how many
    # ... but "there is a" and an inverted "next to the pier is a" introduce one
    ("There is a ship near the shore. There is a boat in the middle of the river.", {"ship": 2}),
    ("Next to the pier is a small boat.", {"harbor": None, "ship": 1}),
    ("A ship is moored along the shore. Beside it is a small boat.", {"ship": 2}),
    # definite re-mentions and pronouns refer back
    ("Three planes are parked on the apron. These planes are white.", {"plane": 3}),
    ("There is a plane on the apron. It is parked next to the terminal.", {"plane": 1}),
    ("Two ships are moored along the shore. They are white.", {"ship": 2}),
    ("There is a storage tank. The storage tank is white, and the tank casts a long shadow.", {"storage-tank": 1}),
    ("The planes are parked next to each other.", {"plane": None}),
    ("There are two ships; one is moored along the shore and the other ship is sailing.", {"ship": 2}),
    ("Both bridges cross the river, and the bridges are gray.", {"bridge": 2}),
    ("There are six ships. Two of the ships are white; the other ships are gray.", {"ship": 6}),
    # "another", "a second", "one more" add one more object
    ("A car is parked by the road. Another car is driving on it.", {SV: 2}),
    ("A ship is moored along the shore, and a second ship is sailing nearby.", {"ship": 2}),
    ("A plane is parked at the gate, a second plane is taxiing, and a third plane is on the runway.", {"plane": 3}),
    ("There are two planes on the apron. Another plane is taxiing on the runway.", {"plane": 3}),
    ("There are three ships. Two ships are moored, and another ship is sailing.", {"ship": 3}),
    ("Seven buses are parked in a row. One more bus is driving on the road.", {LV: 8}),
    # ... unless it picks a member of a group already counted
    ("There are five ships. Two of the ships are white, and another ship is gray.", {"ship": 5}),
    # partitives name a subgroup of known objects
    ("Five ships are moored. Two of the ships are only partially visible.", {"ship": 5}),
    ("Two of the ships are only partially visible.", {"ship": None}),
    ("Three planes are parked, and one of the planes is being refuelled.", {"plane": 3}),
    ("Most of the cars are white, while the others are gray.", {SV: None}),
    # a sentence said again word for word (looping output) states nothing new
    ("There is a ship. There is a ship. There is a ship.", {"ship": 1}),
    ("A car is parked on the road. A car is parked on the road. A car is parked on the road", {SV: 1}),
    ("A car is parked on the road. A car is driving on the road.", {SV: 2}),  # not a repeat
    ("There are two planes. There are two planes. There are two planes.", {"plane": 2}),
    ("No ships can be seen. No ships can be seen.", {"ship": 0}),
    # indefinite articles within a sentence: each "a" is one object
    ("A car is parked on the side of the road, and a car is driving on the road.", {SV: 2}),
    ("There are a tennis court and a basketball court.", {"tennis-court": 1, "basketball-court": 1}),
    # plural without a number names the class without a count; a singular article states one
    ("Ships are moored along the shore.", {"ship": None}),
    ("There is a harbor with ships.", {"harbor": 1, "ship": None}),
    ("A ship is moored along the shore.", {"ship": 1}),
    # numbers: words, digits, hyphens, "a dozen", "a pair of", bounds, sums in one sentence, the largest across
    ("There are twenty-four large-vehicles in the image.", {LV: 24}),
    ("There are 12 planes on the apron.", {"plane": 12}),
    ("A dozen boats and a pair of tennis courts.", {"ship": 12, "tennis-court": 2}),
    ("More than one hundred small vehicles are parked.", {SV: 100}),
    ("Seven long yellow buses and three trucks are parked.", {LV: 10}),
    ("There are ten cars. Two cars are parked by the road.", {SV: 10}),
    ("There are two ships, and the two ships are moored side by side.", {"ship": 2}),
    # vague quantifiers and negation
    ("Several cars are parked. Many cars are driving.", {SV: "many"}),
    ("There are no ships in the harbor, but there is a bridge.", {"ship": 0, "harbor": None, "bridge": 1}),
]


@pytest.mark.parametrize("caption, expected", WRITTEN)
def test_written_counts(caption, expected):
    assert counts(caption) == expected


def test_the_issue_caption_is_a_miscount_for_three_ships():
    caption = "The image is of a small ship. The ship is a small vessel. The ship is a small vessel."
    assert ground(caption, [{"category": "ship"}] * 3).miscounted == ["ship"]
    assert ground(caption, [{"category": "ship"}]).classes["ship"].count_correct is True


def test_a_long_looping_caption_counts_once():
    caption = "There is a ship. The ship is a small vessel. " * 2000 + "The ship is a small"
    assert counts(caption) == {"ship": 1}
    # no full stop: no sentence repeats, but no "a ..." after "the ship is" adds (no introduction, no count)
    assert counts("the ship is a small vessel and " * 3000 + "a car.") == {"ship": None, SV: 1}


# (file, a sentence of its caption or None for the whole caption, expected): hand-read from the real captions
REAL = [
    ("P0378_0001.png", "Specifically, thirty-seven large-vehicles and fourteen small-vehicles can be observed",
     {LV: 37, SV: 14}),
    ("P0378_0001.png", "In the parking lot, there are many vehicles, including cars, trucks, and buses.",
     {VEHICLE: "many", SV: None, LV: None}),
    ("P0378_0001.png", None, {LV: 37, SV: 14, VEHICLE: "many"}),
    ("P1077_0002.png", "an outdoor tennis court with two tennis courts.", {"tennis-court": 2}),
    ("P0363_0005.png", "Specifically, ten cars can be observed in the image, including the cars parked in front of "
                       "buildings and cars driving in the street.", {SV: 10}),
    ("P0363_0005.png", "In the top part of the image, there are four tennis courts with one completely seen and three "
                       "partially seen.", {"tennis-court": 4}),
    ("P0363_0005.png", None, {"tennis-court": 4, SV: 10}),
    ("P2164_0018.png", "There is a road and an intersection in the image, with a car runing on it at the moment.",
     {SV: 1}),
    ("P2164_0018.png", None, {SV: 7, VEHICLE: "several"}),
    ("P1962_0000.png", None, {"baseball-diamond": 1}),
    ("P1408_0014.png", "There are no objects such as airplanes or cars in the image.", {"plane": 0, SV: 0}),
    ("P0656_0003.png", "The image shows an aerial view of a group of three tennis courts.", {"tennis-court": 3}),
    ("P0656_0003.png", None, {"tennis-court": 3}),
    ("P1497_0034.png", "On the right side of the image, you can see an airplane and two boarding bridges.",
     {"plane": 1}),
    ("P1497_0034.png", "totaling 20 vehicles visible in the image.", {VEHICLE: 20}),
    ("P1480_0013.png", None, {"plane": 1}),
    ("P1389_0065.png", None, {"swimming-pool": 1, SV: 1}),
    ("P2551_0048.png", "The airplane is connected to a boarding bridge, and there are some vehicles nearby.",
     {"plane": None, VEHICLE: "some"}),
    ("P2551_0048.png", None, {"plane": 1, "bridge": 1, VEHICLE: "some"}),
    ("P0900_0000.png", None, {SV: 2}),
    ("P2014_0032.png", "There are twenty-four large-vehicles and more than one hundred small-vehicles in the image.",
     {LV: 24, SV: 100}),
    ("P0003_0003.png", "there is a parking lot with seven long yellow buses parked neatly in a row, and three trucks "
                       "parked on the other side, one yellow and two white.", {LV: 10}),
    ("P0123_0000.png", "Under the residential area is a large tennis court area with seven courts, four of which are "
                       "fully visible while the other three are partially visible.", {"tennis-court": 7}),
    ("P2481_0038.png", None, {VEHICLE: 1}),
    ("P1257_0053.png", None, {VEHICLE: "many"}),
]


@pytest.mark.parametrize("filename, sentence, expected", REAL, ids=[f"{f}-{i}" for i, (f, _, _) in enumerate(REAL)])
def test_real_caption_counts(human, filename, sentence, expected):
    caption = human[filename]
    if sentence is not None:
        assert sentence in caption, f"{filename}: the sentence is no longer in its caption; update REAL"
        caption = sentence
    assert counts(caption) == expected


def test_a_real_caption_said_twice_counts_as_once(human):
    for filename, caption in human.items():
        assert counts(caption + " " + caption) == counts(caption), filename
