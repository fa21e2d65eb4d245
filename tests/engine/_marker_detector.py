"""A stand-in face detector for tests: every pure-red square (255, 0, 0) in an image is a "face".

Deterministic and instant, so the plumbing around detection (slots, rows, crops, video, training) is tested
without real faces; MTCNN itself is tested on real face crops from ../shared.
"""

import numpy as np
from scipy import ndimage

from dfx.engine.face_detect import Face, FaceDetector


class MarkerDetector(FaceDetector):
    def detect(self, image) -> list[Face]:
        image = np.asarray(image)
        mask = (image[..., 0] > 200) & (image[..., 1] < 70) & (image[..., 2] < 70)  # survives video coding
        labels, n = ndimage.label(mask)
        faces = []
        for sl in ndimage.find_objects(labels):
            y, x = sl
            side = max(y.stop - y.start, x.stop - x.start)
            if side >= self.min_face:
                # larger squares are "more confident", so the order is known
                faces.append(Face((float(x.start), float(y.start), float(x.stop), float(y.stop)), min(1.0, side / 200)))
        return sorted(faces, key=lambda f: -f.confidence)
