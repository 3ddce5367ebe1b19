import saguaro


def test_build_info_reports_cpu_machine_without_crash():
    info = saguaro.build_info()
    assert info["version"] == saguaro.__version__
    assert isinstance(info["cuda_compiled"], bool)
    assert info["cuda_device_count"] >= 0
    assert isinstance(info["nccl_available"], bool)
