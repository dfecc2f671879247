"""tcodec for Python Temporal workers.

The same codec, keyring and key-encryption keys as tcodec's Rust worker and codec server,
running in Rust: payloads are compressed and sealed (XAES-256-GCM) before they leave the
worker, under the keyring's primary key, and readable by every tcodec worker, the codec
server and the ``tcodec`` CLI.

    import tcodec
    codec = tcodec.Codec(tcodec.Keyring.open("/etc/tcodec/payments.json",
                                             master_key_file="/etc/tcodec/master.key"))
    client = await Client.connect(address, data_converter=tcodec.temporal.data_converter(codec))

or, from the environment (``TCODEC_KEYRING``, ``TCODEC_MASTER_KEY_FILE``, ``TCODEC_KMS_KEYS``,
``TCODEC_DECODE_ALLOW``): ``tcodec.temporal.data_converter(tcodec.Codec.from_env())``.
"""

from tcodec._native import Codec, CodecError, Keyring

from . import temporal

__all__ = ["Codec", "CodecError", "Keyring", "temporal"]
