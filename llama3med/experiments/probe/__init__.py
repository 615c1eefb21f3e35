"""The synthetic fine-detail probe: a data set in the layout of a VQA benchmark folder whose targets only a
high-resolution view can see (`generate`: plans, questions, splits and files; `images`: the pixels)."""
