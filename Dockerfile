# The one image: docker-compose.yml, docker-compose.scaled.yml and a Hugging Face Space.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/home/user \
    PATH=/home/user/.local/bin:$PATH \
    HOST=0.0.0.0 \
    PORT=7860

# uid 1000, as Hugging Face Spaces run containers; it writes nothing outside $HOME or /tmp.
RUN useradd --create-home --uid 1000 user
WORKDIR /home/user/app

# Dependencies first, so a code change does not reinstall them.
COPY --chown=user requirements.txt ./
RUN pip install -r requirements.txt

COPY --chown=user pyproject.toml README.md ./
COPY --chown=user backend ./backend
COPY --chown=user frontend ./frontend
COPY --chown=user nginx ./nginx
RUN pip install --no-deps . && rm -rf build

USER user
EXPOSE 7860
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD python -c "import os,urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"PORT\"]}/healthz', timeout=2)"
CMD ["chatlimit", "serve"]
