"""CheXpert's label names (Irvin et al. 2019): the 14 observations and the 5 competition tasks.

Shared by the CheXpert converter (the CSV columns it reads) and the synthetic chest X-rays
(the findings they draw and the layout they write), so neither imports the other.
"""

OBSERVATIONS = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)
COMPETITION_TASKS = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")
