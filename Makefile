# The two commands of the README. Each sets up .venv when needed.
RUN ?= runs/quick
PRESET ?= quick

.PHONY: demo test setup bench

demo: setup  ## the quick reproduction of the paper on built-in synthetic faces
	.venv/bin/dfrobust reproduce --preset $(PRESET) --run $(RUN)

test:  ## the test suite (< 5 minutes on 2 cores); with the faceswap, timm and video extras so the dlib, timm and PyAV paths are tested
	@DFROBUST_EXTRAS=test,faceswap,timm,video scripts/setup.sh
	.venv/bin/python -m pytest -q

setup:
	@scripts/setup.sh
