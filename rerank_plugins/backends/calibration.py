"""Calibration for static int8: the user's own pairs, or a default set of search-like pairs written for this package.

Static quantization fixes each activation's int8 range from calibration batches, so the pairs should look like what
the model will score. Pass your own (``calibration_pairs=`` of
:func:`~rerank_plugins.backends.export.export_static_quantized_openvino_model`): a sample of your queries with
their candidates. The default below is web-search-like English text of the lengths rerankers see (questions of a
few words; passages of one to five sentences), relevant and irrelevant pairs mixed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

DEFAULT_CALIBRATION_PAIRS: tuple[tuple[str, str], ...] = (
    ("what is the boiling point of water at high altitude",
     "Water boils at a lower temperature at high altitude because the air pressure is lower. At 3,000 metres it "
     "boils at about 90 degrees Celsius, which is why cooking pasta or eggs takes longer in the mountains."),
    ("what is the boiling point of water at high altitude",
     "The city council approved a new budget on Tuesday that increases spending on roads and public libraries."),
    ("how long does it take to recover from a broken wrist",
     "Most broken wrists heal in six to eight weeks. A cast or splint keeps the bone in place, and physical "
     "therapy afterwards restores strength and movement. Older patients and complex fractures may need longer."),
    ("how long does it take to recover from a broken wrist",
     "Wrist watches became popular after the First World War, when soldiers found them more practical than "
     "pocket watches in the trenches."),
    ("who painted the ceiling of the sistine chapel",
     "Michelangelo painted the ceiling of the Sistine Chapel between 1508 and 1512 at the request of Pope Julius "
     "II. The frescoes include the famous Creation of Adam."),
    ("causes of inflation", "Inflation rises when demand outpaces supply, when production costs such as wages and "
     "energy increase, or when the money supply grows faster than the economy. Central banks respond by raising "
     "interest rates, which makes borrowing more expensive and slows spending."),
    ("causes of inflation", "The recipe calls for two cups of flour, one cup of sugar, three eggs and a teaspoon "
     "of vanilla extract. Bake at 180 degrees for thirty-five minutes."),
    ("what does a mitochondria do",
     "Mitochondria are the organelles that produce most of the chemical energy a cell needs, in the form of ATP, "
     "through cellular respiration."),
    ("best time to plant tomatoes",
     "Plant tomatoes outdoors after the last spring frost, when night temperatures stay above 10 degrees Celsius. "
     "Seeds can be started indoors six to eight weeks earlier."),
    ("best time to plant tomatoes", "Tomato sauce freezes well for up to six months in airtight containers."),
    ("how many moons does jupiter have",
     "Jupiter has 95 officially recognised moons. The four largest, Io, Europa, Ganymede and Callisto, were "
     "discovered by Galileo Galilei in 1610 and are known as the Galilean moons."),
    ("symptoms of vitamin d deficiency",
     "Vitamin D deficiency can cause tiredness, bone pain, muscle weakness and, in children, rickets. It is "
     "common in winter at northern latitudes, when the skin makes little vitamin D from sunlight."),
    ("symptoms of vitamin d deficiency",
     "The stadium holds 60,000 spectators and was renovated in 2015 with a new roof and larger screens."),
    ("what is a roth ira", "A Roth IRA is a retirement account funded with money that has already been taxed. "
     "Withdrawals in retirement, including investment gains, are tax free if the account has been open for at "
     "least five years and the owner is 59 and a half or older."),
    ("define photosynthesis", "Photosynthesis is the process by which green plants use sunlight, water and carbon "
     "dioxide to make glucose and release oxygen."),
    ("define photosynthesis", "The photographer used a wide-angle lens to capture the entire skyline at dusk."),
    ("how to remove a stripped screw",
     "Press a wide rubber band between the screwdriver and the screw head for extra grip, then turn slowly. If "
     "that fails, a screw extractor bit drilled into the head will back the screw out."),
    ("when did the berlin wall fall",
     "The Berlin Wall fell on 9 November 1989, when East German authorities opened the border crossings. Crowds "
     "began tearing down sections of the wall that night, and Germany was reunified in October 1990."),
    ("when did the berlin wall fall", "Berlin is home to more than 170 museums, including the Pergamon Museum."),
    ("average salary of a registered nurse",
     "Registered nurses earned a median annual wage of about 86,000 dollars in the United States in 2023, with "
     "higher pay in hospitals and in states such as California."),
    ("what is the difference between a virus and bacteria",
     "Bacteria are single-celled living organisms that can reproduce on their own, and many are treated with "
     "antibiotics. Viruses are much smaller, need a host cell to replicate, and do not respond to antibiotics."),
    ("what is the difference between a virus and bacteria",
     "The software update fixes a bug that caused the application to crash when opening large files."),
    ("how tall is mount kilimanjaro",
     "Mount Kilimanjaro in Tanzania rises 5,895 metres above sea level, the highest mountain in Africa."),
    ("why is the sky blue", "Sunlight is scattered by the molecules of the atmosphere, and short blue wavelengths "
     "are scattered much more than red ones, so the sky looks blue from every direction during the day."),
)  # fmt: skip
"""The default calibration pairs: written for this package (no data set is downloaded)."""


def calibration_batches(module: Any, pairs: Sequence[Any], batch_size: int = 8) -> Iterator[dict[str, Any]]:
    """``module``'s collated features of ``pairs``, ``batch_size`` rows at a time (listwise: one list per query)."""
    from rerank_plugins.core.requests import ListRow

    rows: list[Any] = [tuple(pair) for pair in pairs]
    if getattr(module, "family", "") == "listconranker":
        lists: dict[str, list[str]] = {}
        for query, document in rows:
            lists.setdefault(query, []).append(document)
        rows = [ListRow(query, tuple(documents)) for query, documents in lists.items()]
        batch_size = 1
    for start in range(0, len(rows), batch_size):
        yield module.collate(module.encode(rows[start : start + batch_size]))
