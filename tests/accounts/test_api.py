import pytest

from accounts.models import User
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff():
    return factories.superuser("boss")


def test_token_then_me():
    finance = factories.role("finance")
    factories.user(username="ann", roles=[finance], password="correct-Horse-9")
    client = factories.api_client()

    response = client.post(
        "/api/v1/auth/token/", {"username": "ann", "password": "correct-Horse-9"}, format="json"
    )
    assert response.status_code == 200
    client.credentials(HTTP_AUTHORIZATION=f"Token {response.json()['token']}")

    me = client.get("/api/v1/me/")
    assert me.json() == {"username": "ann", "roles": ["finance"], "is_staff": False}


def test_wrong_password_is_401_with_detail():
    factories.user(username="ann", password="correct-Horse-9")
    response = factories.api_client().post(
        "/api/v1/auth/token/", {"username": "ann", "password": "nope"}, format="json"
    )
    assert response.status_code == 401
    assert response.json()["detail"] == "Invalid username or password."


def test_anonymous_is_401():
    response = factories.api_client().get("/api/v1/me/")
    assert response.status_code == 401
    assert "detail" in response.json()


@pytest.mark.parametrize(
    "method,path",
    [
        ("get", "/api/v1/roles/"),
        ("post", "/api/v1/roles/"),
        ("get", "/api/v1/users/"),
        ("post", "/api/v1/users/"),
        ("patch", "/api/v1/users/1/"),
        ("patch", "/api/v1/roles/1/"),
        ("delete", "/api/v1/roles/1/"),
    ],
)
def test_provisioning_needs_management_rights(method, path):
    client = factories.api_client(factories.user(roles=[factories.role("finance")]))
    response = getattr(client, method)(path, {"name": "x"}, format="json")
    assert response.status_code == 403


def test_staff_creates_role_and_user_and_changes_roles(staff):
    client = factories.api_client(staff)
    finance = client.post(
        "/api/v1/roles/", {"name": "finance", "description": "Money"}, format="json"
    )
    assert finance.status_code == 201
    assert finance.json()["name"] == "finance"
    client.post("/api/v1/roles/", {"name": "hr"}, format="json")

    created = client.post(
        "/api/v1/users/",
        {"username": "newbie", "password": "a-Long-pass-42", "roles": ["finance"]},
        format="json",
    )
    assert created.status_code == 201, created.json()
    body = created.json()
    assert body["roles"] == ["finance"] and body["is_active"] is True
    assert "password" not in body

    patched = client.patch(f"/api/v1/users/{body['id']}/", {"roles": ["hr"]}, format="json")
    assert patched.json()["roles"] == ["hr"]
    assert list(User.objects.get(username="newbie").roles.values_list("name", flat=True)) == ["hr"]

    # The new user can log in with the password the admin set.
    token = factories.api_client().post(
        "/api/v1/auth/token/", {"username": "newbie", "password": "a-Long-pass-42"}, format="json"
    )
    assert token.status_code == 200


def test_unknown_role_is_a_400_naming_it(staff):
    factories.role("finance")
    client = factories.api_client(staff)
    response = client.post(
        "/api/v1/users/",
        {"username": "x1", "password": "a-Long-pass-42", "roles": ["finance", "wizards"]},
        format="json",
    )
    assert response.status_code == 400
    assert "wizards" in response.json()["detail"]
    assert not User.objects.filter(username="x1").exists()

    user = factories.user(roles=[])
    response = client.patch(f"/api/v1/users/{user.pk}/", {"roles": ["ghosts"]}, format="json")
    assert response.status_code == 400
    assert "ghosts" in response.json()["detail"]


@pytest.mark.parametrize(
    "payload,field",
    [
        ({"password": "a-Long-pass-42"}, "username"),
        ({"username": "bad name!", "password": "a-Long-pass-42"}, "username"),
        ({"username": "shorty", "password": "123"}, "password"),
        ({"username": "r", "password": "a-Long-pass-42", "roles": "finance"}, "roles"),
    ],
)
def test_bad_user_input_is_a_clear_400(staff, payload, field):
    response = factories.api_client(staff).post("/api/v1/users/", payload, format="json")
    assert response.status_code == 400
    assert field in response.json()["detail"]


def test_duplicate_names_are_400(staff):
    client = factories.api_client(staff)
    assert client.post("/api/v1/roles/", {"name": "hr"}, format="json").status_code == 201
    dup = client.post("/api/v1/roles/", {"name": "hr"}, format="json")
    assert dup.status_code == 409 and "already exists" in dup.json()["detail"]
    factories.user(username="taken")
    dup_user = client.post(
        "/api/v1/users/", {"username": "taken", "password": "a-Long-pass-42"}, format="json"
    )
    assert dup_user.status_code == 409 and "already exists" in dup_user.json()["detail"]


def test_malformed_json_is_400_not_500(staff):
    response = factories.api_client(staff).post(
        "/api/v1/roles/", data="{not json", content_type="application/json"
    )
    assert response.status_code == 400
    assert "JSON" in response.json()["detail"]


def test_role_update_and_delete(staff):
    client = factories.api_client(staff)
    role = factories.role("temp")
    assert (
        client.patch(f"/api/v1/roles/{role.pk}/", {"description": "d"}, format="json").json()[
            "description"
        ]
        == "d"
    )
    assert client.delete(f"/api/v1/roles/{role.pk}/").status_code == 204
    assert client.delete(f"/api/v1/roles/{role.pk}/").status_code == 404
