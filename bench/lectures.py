"""Five short lectures for the lecture-notes evaluation (``bench/notes_eval.py``), written for it.

Each is spoken with the shipped Piper voice at run time (60–120 s each). Each has the glossary a
lecturer would give, and the definitions the lecture states: the term and words its definition must
hold. They open and close the way real lectures do (greetings, signposts, "to sum up"), and state
definitions in the forms the notes must read the right way round: "X is Y", "X means Y",
"Y is called X", "X, a Y that ...", "First, X. An X is ...".
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Lecture:
    name: str
    paragraphs: list[str]
    glossary: list[str]
    #: term -> words its definition must contain (lower case)
    definitions: dict[str, list[str]] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return "\n".join(self.paragraphs) + "\n"


LECTURES = [
    Lecture(
        "databases",
        [
            "Good morning, everyone. Today we look at how a database survives a crash.",
            "First, the log. A write-ahead log is a file where the database records every change before it "
            "changes the data itself. If the power fails, the database reads the log and repeats the changes "
            "that were recorded but not yet applied.",
            "Second, the checkpoint. Copying the changed pages to disk and marking the log up to that point as "
            "done is called a checkpoint. Checkpoints keep the log short, so recovery after a crash is quick.",
            "Third, the index. A B-tree, a balanced tree that keeps keys in sorted order, lets the database find "
            "a row in a few page reads. Each page of the tree holds hundreds of keys.",
            "Durability means that a committed transaction stays committed, even after a crash. "
            "The write-ahead log is what makes durability cheap: the database only has to flush the log, "
            "not every page it touched.",
            "To sum up, log first, apply later, and checkpoint often. Thank you, and see you next week.",
        ],
        ["write-ahead log", "checkpoint", "B-tree", "durability", "transaction"],
        {"write-ahead log": ["records", "change"], "checkpoint": ["copying", "pages"],
         "B-tree": ["balanced", "tree", "sorted"], "durability": ["committed", "transaction"]},
    ),
    Lecture(
        "cells",
        [
            "Hello and welcome back. In this lecture we explore where a cell gets its energy.",
            "Mitochondria are organelles that turn sugar and oxygen into energy the cell can use. "
            "A cell that works hard, like a muscle cell, can hold thousands of them.",
            "The energy is stored in a small molecule. This molecule is called adenosine triphosphate, "
            "or ATP for short. When the cell breaks a bond in ATP, it releases the energy for work.",
            "Cellular respiration is the process by which the cell burns sugar with oxygen to make ATP. "
            "It happens in three stages: glycolysis, the citric acid cycle, and the electron transport chain.",
            "Glycolysis means splitting one sugar molecule into two smaller molecules in the cytoplasm. "
            "It needs no oxygen, which is why muscles can keep working for a short time without enough air.",
            "So remember: mitochondria make ATP, and ATP pays for almost everything the cell does. "
            "That's all for today.",
        ],
        ["mitochondria", "ATP", "adenosine triphosphate", "cellular respiration", "glycolysis", "cytoplasm"],
        {"mitochondria": ["organelles", "energy"], "adenosine triphosphate": ["molecule"],
         "cellular respiration": ["process", "sugar", "oxygen"], "glycolysis": ["splitting", "sugar"]},
    ),
    Lecture(
        "economics",
        [
            "Good afternoon. Today we talk about prices, and why they rise.",
            "Inflation is the rate at which the general level of prices rises over a year. "
            "When inflation is high, the same money buys fewer goods each month.",
            "Central banks watch a basket of goods. The consumer price index, a number that tracks the cost of "
            "that basket, is how most countries measure inflation.",
            "A central bank fights inflation with interest rates. Raising the rate that banks pay to borrow "
            "is called monetary tightening. It makes loans dearer, so people and firms spend less, and prices "
            "slow down.",
            "Deflation means that prices fall across the whole economy. It sounds pleasant, but people then "
            "delay their purchases, firms sell less, and unemployment can rise. Japan lived with falling prices "
            "for much of the nineteen nineties and beyond.",
            "To sum up, a little inflation is normal, and central banks steer it with interest rates. "
            "Thanks for listening.",
        ],
        ["inflation", "consumer price index", "central bank", "monetary tightening", "deflation",
         "interest rates"],
        {"inflation": ["rate", "prices"], "consumer price index": ["number", "cost", "basket"],
         "monetary tightening": ["raising", "rate"], "deflation": ["prices", "fall"]},
    ),
    Lecture(
        "astronomy",
        [
            "Okay, let's get started. This session is about planets around other stars.",
            "An exoplanet is a planet that orbits a star other than the Sun. The first one around a star like "
            "ours was found in nineteen ninety-five.",
            "Most exoplanets are found with the transit method. When a planet passes in front of its star, "
            "the star's light dims by a tiny amount, and a telescope can measure that dip again and again.",
            "The habitable zone is the range of distances from a star where water could stay liquid on a "
            "planet's surface. Too close, and the water boils; too far, and it freezes. Earth sits comfortably "
            "inside the Sun's habitable zone.",
            "A second method uses the star's wobble. The shift of the star's light towards blue and then red "
            "as it moves is called the Doppler shift, and its size tells us the planet's mass.",
            "To sum up, transits give us a planet's size, the Doppler shift gives its mass, and together they "
            "tell us whether it is rocky. See you on Thursday.",
        ],
        ["exoplanet", "transit method", "habitable zone", "Doppler shift", "telescope"],
        {"exoplanet": ["planet", "orbits", "star"], "habitable zone": ["range", "distances", "water"],
         "Doppler shift": ["shift", "light"], "transit method": ["planet", "passes", "dims"]},
    ),
    Lecture(
        "algorithms",
        [
            "Hi everyone, and thanks for coming. Today we cover how a map app finds the shortest route.",
            "A graph, a set of points joined by lines, is the model of a road network. The points are called "
            "vertices, and the lines between them are called edges. Each edge has a weight, its length in "
            "minutes.",
            "Dijkstra's algorithm finds the shortest path from one vertex to every other. It keeps a priority "
            "queue of vertices ordered by their distance so far, and always expands the closest one next.",
            "A priority queue is a structure that always hands out its smallest item first. A binary heap is "
            "the usual way to build one.",
            "Dijkstra's algorithm fails when an edge has a negative weight. For those graphs we use the "
            "Bellman-Ford algorithm, which is slower but handles negative weights. Road networks have no negative "
            "weights, so map apps stick with Dijkstra and a few clever shortcuts.",
            "To sum up, model the roads as a weighted graph, and let a priority queue pick the next vertex. "
            "That's it for today.",
        ],
        ["Dijkstra's algorithm", "priority queue", "vertices", "edges", "binary heap", "Bellman-Ford"],
        {"graph": ["points", "lines"], "vertices": ["points"], "edges": ["lines"],
         "priority queue": ["structure", "smallest"]},
    ),
]
