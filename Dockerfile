# vidtool on a CUDA PyTorch base: `docker run --gpus all -v $PWD:/work vidtool generate "a red circle moving right" -o /work/k.safetensors`
FROM pytorch/pytorch:2.6.0-cuda12.4-cudnn9-runtime

RUN apt-get update && apt-get install -y --no-install-recommends ffmpeg && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/vidtool
COPY pyproject.toml README.md ./
COPY vidtool ./vidtool
COPY stages ./stages
# The base image's CUDA torch satisfies the `torch>=2.2` requirement, so pip keeps it.
RUN pip install --no-cache-dir . && vidtool --help >/dev/null

WORKDIR /work
ENTRYPOINT ["vidtool"]
CMD ["--help"]
