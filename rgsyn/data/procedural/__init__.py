"""The procedural datasets rgsyn renders itself, apart from the loaders of real on-disk layouts: the
embedded re-id default (render.py), the second re-id set for transfer checks (render_street.py) and the
embedded faces with their pair sets (faces.py, face_pairs.py). Each writes a real layout
(Market-1501, image folder + insightface .bin), so the same loaders read it back."""
