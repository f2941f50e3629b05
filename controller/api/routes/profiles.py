from __future__ import annotations

from fastapi import APIRouter

from controller.api.deps import ReadAuth
from controller.errors import NotFoundError
from shared.profiles import BUILTIN_PROFILES, DeviceProfile

router = APIRouter(prefix="/profiles", tags=["profiles"], dependencies=[ReadAuth])


@router.get("", response_model=list[DeviceProfile])
def list_profiles() -> list[DeviceProfile]:
    return [BUILTIN_PROFILES[n] for n in sorted(BUILTIN_PROFILES)]


@router.get("/{name}", response_model=DeviceProfile)
def get_profile(name: str) -> DeviceProfile:
    profile = BUILTIN_PROFILES.get(name)
    if profile is None:
        raise NotFoundError(f"unknown profile {name!r}; known: {', '.join(sorted(BUILTIN_PROFILES))}")
    return profile
