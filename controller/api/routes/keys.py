from __future__ import annotations

from fastapi import APIRouter

from controller.api.deps import SigningKeyDep
from controller.api.schemas import PublicKeyOut
from shared import signing

# Open on purpose: a public key is public, and provisioning scripts fetch it before holding any token.
router = APIRouter(prefix="/keys", tags=["keys"])


@router.get("/public", response_model=PublicKeyOut)
def public_key(key: SigningKeyDep) -> PublicKeyOut:
    pub = key.public_key()
    return PublicKeyOut(key_id=signing.key_id(pub), public_key_pem=signing.public_key_pem(pub))
