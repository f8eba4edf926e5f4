import subprocess


def stop_process(process: subprocess.Popen, *, timeout: float = 20) -> None:
    """Terminate a server the tests started; kill it if it does not stop in time."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
