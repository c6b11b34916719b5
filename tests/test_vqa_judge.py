"""VQA answers judged by what they say, per question type (`rsmoe.evaluation.vqa`): short and
sentence answers, the issue's three examples, every real RSIEval pair, and our own generated QA
answered by our own captions."""
import itertools
import json
import math

import numpy as np
import pytest

from rsmoe.data.describe import describe, make_qa
from rsmoe.data.records import DOTA_V15_CLASSES, CropObject
from rsmoe.evaluation.vqa import UnknownQuestionType, accuracy, is_correct, normalize_answer


@pytest.fixture(scope="module")
def rsieval_pairs(shared_data):
    """The 58 human QA pairs of RSIEval (question, answer, type), in file order."""
    annotations = json.loads((shared_data / "rsieval" / "annotations.json").read_text())["annotations"]
    return [qa for a in annotations for qa in a["qa_pairs"]]


# ------------------------------------------------------------------ the examples

WATER_Q = "Is the area covered by water larger than the area covered by built-up or paved ground in this image?"


@pytest.mark.parametrize("prediction, gold, qtype, question, right", [
    ("There are no ships in this image.", "No.", "presence", "Are there any ships in this image?", True),
    ("The area covered by water is larger than the area covered by built-up or paved ground", "Yes.", "area_comp",
     WATER_Q, True),
    ("The image is a sequence of three images.", "Three.", "quantity", "How many ships are there?", False),
])
def test_the_reported_answers_are_judged_by_what_they_say(prediction, gold, qtype, question, right):
    assert is_correct(prediction, gold, qtype, question=question) is right
    assert is_correct(prediction, gold, qtype, question) is right  # the question is the 4th positional argument


# ------------------------------------------------------------------ per type, short and sentence answers

GRASS_Q = "In this image, is the area occupied by the grassland larger than the area occupied by the buildings?"
ROAD_Q = "Is the area covered by road greater than that of the parking lot in this image?"
TANKS_Q = "What is the relative position between the tree and the oil storage tank?"
LOT_Q = "What is the relative position between the parking lot and the road?"
BANDS_Q = "Is this image a panchromatic image or a color image?"


@pytest.mark.parametrize("prediction, gold, question, right", [
    ("No.", "No.", "Are there any ships in this image?", True),
    ("No ships can be seen.", "No.", "Is there a ship in this image?", True),
    ("Ships are not visible in the image.", "No.", "Are there any ships in this image?", True),
    ("Yes, there are.", "Yes.", "Are there any ships in this image?", True),
    ("There are two ships.", "Yes.", "Are there any ships in this image?", True),
    ("Three boats are moored along the pier.", "Yes.", "Are there any ships in this image?", True),
    ("There are two ships.", "Yes.", "Are there any harbors in this image?", False),  # says nothing of harbors
    ("There are two ships but no harbor.", "No.", "Are there any harbors in this image?", True),
    ("There are two ships but no harbor.", "Yes.", "Does this image contain ships?", True),
    ("There are large vehicles.", "Yes.", "Are there small vehicles in this image?", False),
    ("Several cars are parked by the road.", "Yes.", "Are there any vehicles in this image?", True),
    ("There is a river.", "Yes.", "Does the image contains waterbody?", True),
    ("There are no trees in the image.", "Yes.", "Does this image contains trees?", False),
    ("This is a residential area.", "No.", "Is this an industrial area?", True),
    ("This is an industrial area.", "No.", "Is this an industrial area?", False),
    ("There are no objects such as planes, ships or vehicles in the image.", "No.", "Is there a harbor in this image?",
     True),  # describe's sentence for an empty crop
])
def test_presence_by_polarity_about_the_asked_object(prediction, gold, question, right):
    assert is_correct(prediction, gold, "presence", question) is right


@pytest.mark.parametrize("prediction, gold, question, right", [
    ("Yes.", "Yes.", WATER_Q, True),
    ("The built-up area is smaller than the water.", "Yes.", WATER_Q, True),
    ("The built-up or paved ground covers a larger area than the water.", "No.", WATER_Q, True),
    ("The built-up or paved ground covers a larger area than the water.", "Yes.", WATER_Q, False),
    ("The water area is not larger than the paved ground.", "No.", WATER_Q, True),
    ("The image is mostly covered by water, with some built-up or paved ground.", "Yes.", WATER_Q, True),
    ("The grassland is larger.", "Yes.", GRASS_Q, True),
    ("The buildings occupy a larger area than the grassland.", "Yes.", GRASS_Q, False),
    ("They are about the same size.", "No.", GRASS_Q, True),
    ("The parking lot covers a larger area than the road.", "No.", ROAD_Q, True),
    ("The road is larger than the parking lot.", "No.", ROAD_Q, False),
])
def test_area_comparison_by_what_the_sentence_ranks(prediction, gold, question, right):
    assert is_correct(prediction, gold, "area_comp", question) is right


@pytest.mark.parametrize("prediction, gold, question, right", [
    ("There are three ships in the harbor.", "Three.", "How many ships are there?", True),
    ("There are two harbors and three ships.", "Three.", "How many ships are there?", True),
    ("There are two harbors and three ships.", "Two.", "How many ships are there?", False),
    ("Three boats are moored along the harbor.", "Three.", "How many ships are there?", True),
    ("3", "Three.", "How many ships are there?", True),
    ("There are ten.", "Ten.", "How many vehicles are there in this image?", True),
    ("There are ten cars.", "Ten.", "How many vehicles are there in this image?", True),
    ("There is a car.", "One.", "How many cars are there in this image?", True),
    ("There are five large vehicles and 31 small vehicles.", "31", "How many small vehicles are there in the image?",
     True),
    ("There are five large vehicles and 31 small vehicles.", "five", "How many large vehicles in the image?", True),
    ("There are five large vehicles and 31 small vehicles.", "31", "How many large vehicles in the image?", False),
    ("There are 120 cars.", "More than one hundred.", "How many cars are there in this image?", True),
    ("There are 90 cars.", "More than one hundred.", "How many cars are there in this image?", False),
    ("There are many cars.", "many", "How many cars are there in this image?", True),
    ("There are no ships.", "Zero.", "How many ships are there?", True),
    ("There are seven planes in the image.", "Eight.", "How many planes are there in this image?", False),
    ("There are two buildings.", "Two.", "How many buildings are there in this image?", True),
])
def test_quantity_is_the_number_stated_about_the_asked_object(prediction, gold, question, right):
    assert is_correct(prediction, gold, "quantity", question) is right


@pytest.mark.parametrize("prediction, gold, right", [
    ("The image is a sequence of three images.", "Three.", False),  # a number of images is no object count
    ("There are seven planes in the image.", "Seven.", True),  # the single number stated
    ("There are two harbors and three ships.", "Three.", False),  # counts of several things: undecided
    ("No, there are ten.", "10", True),
])
def test_quantity_without_a_question_takes_the_single_count_stated(prediction, gold, right):
    assert is_correct(prediction, gold, "quantity") is right


@pytest.mark.parametrize("prediction, gold, question, right", [
    ("The vehicles are white and yellow.", "Yellow and White.", "What are the colors of the vehicles in the image?",
     True),
    ("The vehicles are white.", "Yellow and White.", "What are the colors of the vehicles in the image?", False),
    ("The roof is grey, not red.", "Gray.", "What is the color of the roof?", True),
    ("The tennis courts are green. The cars are white.", "green", "What is the color of these tennis courts?", True),
    ("The tennis courts are blue.", "green", "What is the color of these tennis courts?", False),
])
def test_colour_is_the_set_of_colour_words(prediction, gold, question, right):
    assert is_correct(prediction, gold, "color", question) is right


@pytest.mark.parametrize("prediction, gold, right", [
    ("The planes are located in the upper left corner of the image.", "In the top-left corner of the image.", True),
    ("top-left", "in the upper left part", True),
    ("left top", "top left", True),
    ("In the middle of the image.", "In the center of the image.", True),
    ("The ships are scattered across the whole image.", "everywhere", True),
    ("At the top of the image.", "The upper of the image.", True),
    ("The planes are in the upper part of the image.", "In the top-left corner of the image.", False),
    ("The left side of the image", "upper left", False),  # not a bag of words: "left" alone is not top-left
    ("Lower part.", "The upper part of the image.", False),
    ("In the top-left and bottom-right corners.", "bottom right and upper left", True),
])
def test_absolute_position_by_normalised_places(prediction, gold, right):
    assert is_correct(prediction, gold, "ab_position") is right


def test_absolute_position_reads_the_sentences_about_the_asked_object():
    q = "Where is the water in the image?"
    assert is_correct("There is no water.", "There is no water area in the image.", "ab_position", q)
    assert is_correct("The ships are at the top. The water is on the left edge.", "on the left edge", "ab_position", q)
    assert not is_correct("The water is at the top of the image.", "on the left edge", "ab_position", q)


@pytest.mark.parametrize("prediction, gold, question, right", [
    ("The trees are above the storage tanks.", "The storage tanks are underneath the trees.", TANKS_Q, True),
    ("The trees are below the storage tanks.", "The storage tanks are underneath the trees.", TANKS_Q, False),
    ("The road is to the right of the parking lot.", "The parking lot is located on the left side of the road.",
     LOT_Q, True),
    ("On the left of the road.", "The parking lot is located on the left side of the road.", LOT_Q, True),
    ("The parking lot is to the right of the road.", "The parking lot is located on the left side of the road.",
     LOT_Q, False),
    ("The parking lot is next to the road, on its left.", "The parking lot is next to the road.", LOT_Q, True),
])
def test_relative_position_of_the_first_object_to_the_second(prediction, gold, question, right):
    assert is_correct(prediction, gold, "re_position", question) is right


@pytest.mark.parametrize("prediction, gold, right", [
    ("This is a high-resolution aerial image showing a harbor.", "Harbor.", True),
    ("The image shows a car park.", "Parking lot.", True),
    ("The image shows a residential area with a parking lot.", "Parking lot.", False),  # the first scene named
    ("This is an aerial image of a river with a bridge.", "River with a bridge.", True),
    ("Airport.", "Harbor.", False),
])
def test_scene_by_the_scene_type_named(prediction, gold, right):
    assert is_correct(prediction, gold, "scene", "What is the theme of the image?") is right


@pytest.mark.parametrize("prediction, gold, question, right", [
    ("It is a color image.", "Color image.", BANDS_Q, True),
    ("This is a high-resolution color image.", "Color image.", BANDS_Q, True),
    ("It is a panchromatic image.", "Color image.", BANDS_Q, False),
    ("It is a color image, not a panchromatic one.", "Color image.", BANDS_Q, True),
    ("Black and white.", "A panchromatic image.", BANDS_Q, True),
    ("It is a high-resolution image.", "yes", "Is this a high resolution image?", True),
    ("It is a low-resolution image.", "yes", "Is this a high resolution image?", False),
    ("No.", "yes", "Is this a high resolution image?", False),
])
def test_image_by_the_attribute_named(prediction, gold, question, right):
    assert is_correct(prediction, gold, "image", question) is right


@pytest.mark.parametrize("prediction, gold, qtype, question, right", [
    ("The road runs from east to west.", "The road runs from left to right.", "road_ori", None, True),
    ("The road runs from north to south.", "The road runs from left to right.", "road_ori", None, False),
    ("The roads are wide.", "wide", "reasoning", "Are these roads wide or narrow?", True),
    ("The roads are narrow.", "wide", "reasoning", "Are these roads wide or narrow?", False),
    ("Yes, it does.", "Yes.", "reasoning", "Does the road in the image run from left to right?", True),
    ("There are no swimming pools.", "There is no swimming-pools.", "reasoning", "What is next to the swimming-pools?",
     True),
])
def test_road_orientation_and_reasoning(prediction, gold, qtype, question, right):
    assert is_correct(prediction, gold, qtype, question) is right


# ------------------------------------------------------------------ the real RSIEval pairs

REAL_FORMS = [  # normalize_answer(answer, type, question) of every real pair, in file order
    "yes", "no", "7", "top", "above", "no", "color", "white", "yes", "yes",
    "yes", "no", "10", "white yellow", "bottom", "left", "no", "parking lot",
    "5", "more than 100", "yes", "wide", "yes", "no", "yes", "yes", "no", "no",
    "4", "31", "2", "yes", "green", "left", "yes", "no", "top", "no",
    "yes", "yes", "yes", "1", "yes", "2", "yes", "top", "absent", "no",
    "panchromatic", "yes", "yes", "yes", "no", "no", "no", "no", "no", "there is no swimming pools",
]


def test_every_real_pair_is_read_and_judged_right_against_itself(rsieval_pairs):
    assert len(rsieval_pairs) == 58
    forms = [normalize_answer(qa["answer"], qa["type"], qa["question"]) for qa in rsieval_pairs]
    assert forms == REAL_FORMS  # "above": the trees relative to the tanks, though the answer names the tanks first
    for qa, form in zip(rsieval_pairs, forms):
        assert is_correct(qa["answer"], qa["answer"], qa["type"], question=qa["question"]), qa
        assert normalize_answer(form, qa["type"], qa["question"]) == form, qa  # a claim reads as itself


def test_real_answers_that_say_something_else_are_wrong(rsieval_pairs):
    """Each real answer against every other real answer of its type, under the first one's question."""
    judged = 0
    for gold, other in itertools.permutations(rsieval_pairs, 2):
        if gold["type"] != other["type"]:
            continue
        args = gold["type"], gold["question"]
        same = normalize_answer(other["answer"], *args) == normalize_answer(gold["answer"], *args)
        assert is_correct(other["answer"], gold["answer"], *args) is same, (gold, other)
        judged += not same
    assert judged >= 400  # 491 measured


@pytest.mark.parametrize("prediction, gold, qtype, question", [
    ("There are seven planes in the image.", "Ten.", "quantity", "How many vehicles are there in this image?"),
    ("There are seven planes in the image.", "Seven.", "quantity",
     "How many vehicles are there in this image?"),  # seven planes, not seven vehicles
    ("Lower part.", "The upper part of the image.", "ab_position", "Where are the planes in the image?"),
    ("A panchromatic image.", "Color image.", "image", BANDS_Q),
    ("The parking lot is located on the left side of the road.", "The storage tanks are underneath the trees.",
     "re_position", TANKS_Q),
    ("Parking lot.", "Residential area.", "scene", "What is the theme of the image?"),
])
def test_real_answers_under_another_question_are_wrong(prediction, gold, qtype, question):
    assert not is_correct(prediction, gold, qtype, question)


# ------------------------------------------------------------------ our own QA, answered by our own captions


def _box(cat, cx, cy, length, width, angle=0.0, color="white"):
    t = math.radians(angle)
    u, v = (math.cos(t), math.sin(t)), (-math.sin(t), math.cos(t))
    pts = tuple((cx + a * length / 2 * u[0] + b * width / 2 * v[0], cy + a * length / 2 * u[1] + b * width / 2 * v[1])
                for a, b in ((1, 1), (1, -1), (-1, -1), (-1, 1)))
    return CropObject(cat, pts, (cx, cy), length * width, length, width, angle % 180, 1.0, False, 0, color)


def _layouts(n=60, crop=512):
    rng = np.random.default_rng(11)
    out = []
    for _ in range(n):
        objects = []
        for cat in rng.choice(DOTA_V15_CLASSES, size=int(rng.integers(0, 4)), replace=False):
            x0, y0 = rng.uniform(40, crop - 40, 2)
            spread = float(rng.choice([20, 200]))
            for _ in range(int(rng.choice([1, 2, 3, 5, 12, 120] if "vehicle" in cat else [1, 2, 4]))):
                cx, cy = np.clip(rng.normal([x0, y0], spread), 1, crop - 1)
                objects.append(_box(str(cat), float(cx), float(cy), 30.0, 12.0, float(rng.uniform(0, 180)),
                                    str(rng.choice(["white", "gray", "red", "blue"]))))
        cover = dict(zip(("water", "vegetation", "bare_soil", "built"), map(float, rng.dirichlet(np.ones(4) * 0.7))))
        out.append((objects, cover, crop))
    return out


SEGMENT_OF = {"quantity": "objects", "color": "objects", "scene": "theme", "ab_position": "positions",
              "re_position": "relations"}


def test_generated_answers_are_read_and_our_captions_answer_them():
    """Every `make_qa` answer is a claim the judge reads; the caption segment `describe` writes for
    the same crop, used as a sentence answer, is right (counts, colours, places, relations, scene)."""
    checked = 0
    for i, (objects, cover, crop) in enumerate(_layouts()):
        segments = describe(objects, cover, crop, f"k{i}")
        for qa in make_qa(objects, cover, crop, f"k{i}"):
            qtype, question = qa["type"], qa["question"]
            assert is_correct(qa["answer"], qa["answer"], qtype, question), qa
            form = normalize_answer(qa["answer"], qtype, question)
            assert normalize_answer(form, qtype, question) == form, qa  # read as a claim, not as free words
            stated = qtype != "re_position" or qa["answer"] in segments["relations"]  # it keeps three relations
            if qtype in SEGMENT_OF and stated:
                assert is_correct(segments[SEGMENT_OF[qtype]], qa["answer"], qtype, question), (qa, segments)
                checked += 1
            if qtype == "presence" and qa["answer"] == "Yes.":
                assert is_correct(segments["objects"], "Yes.", qtype, question), (qa, segments)
    assert checked >= 100


# ------------------------------------------------------------------ accuracy and errors


def test_accuracy_judges_with_the_question():
    row = {"type": "area_comp", "answer": "Yes.", "question": WATER_Q,
           "prediction": "The built-up or paved ground is smaller than the water."}
    assert accuracy([row])["overall"] == 100.0
    assert accuracy([{k: v for k, v in row.items() if k != "question"}])["overall"] == 0.0  # undecided without it


def test_unknown_question_type_names_the_known_ones():
    with pytest.raises(UnknownQuestionType, match="presence"):
        is_correct("Yes.", "Yes.", "weather", "Is it raining?")
