//! One stub per management operation, carrying its `#[utoipa::path]`: method, path, parameters,
//! body and every status it answers with. `super::OPERATIONS` lists the same operations and a
//! router test checks each one exists.
#![allow(dead_code)] // The stubs only carry the attribute; the handlers live in v1/*.rs.

use super::schemas::*;

#[utoipa::path(
    get,
    path = "/v1/environments",
    tag = "environments",
    summary = "List environments",
    params(PageParams),
    responses(
        (status = 200, description = "A page of environments", body = EnvironmentList),
        (status = 400, description = "Invalid data (INVALID_DATA)", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong admin token (INVALID_TOKEN)", body = ApiErrorBody)
    )
)]
#[allow(dead_code)]
fn list_environments() {}

#[utoipa::path(
    post,
    path = "/v1/environments",
    tag = "environments",
    summary = "Create an environment (and its RS256 signing key)",
    request_body(content = EnvironmentCreate, content_type = "application/json"),
    responses(
        (status = 201, description = "Created", body = Environment),
        (status = 400, description = "Invalid data (INVALID_DATA)", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong admin token (INVALID_TOKEN)", body = ApiErrorBody),
        (status = 413, description = "Body too large (INVALID_DATA)", body = ApiErrorBody)
    )
)]
#[allow(dead_code)]
fn create_environment() {}

#[utoipa::path(
    get,
    path = "/v1/environments/{envId}",
    tag = "environments",
    summary = "Get an environment",
    params(("envId" = String, Path, format = "uuid", description = "The environment id")),
    responses(
        (status = 200, description = "The environment", body = Environment),
        (status = 400, description = "Invalid data (INVALID_DATA)", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong admin token (INVALID_TOKEN)", body = ApiErrorBody),
        (status = 404, description = "Not found (NOT_FOUND)", body = ApiErrorBody)
    )
)]
#[allow(dead_code)]
fn get_environment() {}

#[utoipa::path(
    patch,
    path = "/v1/environments/{envId}",
    tag = "environments",
    summary = "Update an environment",
    params(("envId" = String, Path, format = "uuid", description = "The environment id")),
    request_body(content = EnvironmentUpdate, content_type = "application/json"),
    responses(
        (status = 200, description = "Updated", body = Environment),
        (status = 400, description = "Invalid data (INVALID_DATA)", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong admin token (INVALID_TOKEN)", body = ApiErrorBody),
        (status = 404, description = "Not found (NOT_FOUND)", body = ApiErrorBody),
        (status = 413, description = "Body too large (INVALID_DATA)", body = ApiErrorBody)
    )
)]
#[allow(dead_code)]
fn update_environment() {}

#[utoipa::path(
    delete,
    path = "/v1/environments/{envId}",
    tag = "environments",
    summary = "Delete an environment and everything in it",
    params(("envId" = String, Path, format = "uuid", description = "The environment id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Invalid data (INVALID_DATA)", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong admin token (INVALID_TOKEN)", body = ApiErrorBody),
        (status = 404, description = "Not found (NOT_FOUND)", body = ApiErrorBody)
    )
)]
#[allow(dead_code)]
fn delete_environment() {}

#[utoipa::path(
    get,
    path = "/v1/environments/{envId}/applications",
    tag = "applications",
    summary = "List applications",
    params(("envId" = String, Path, format = "uuid", description = "The environment id"), PageParams),
    responses(
        (status = 200, description = "A page of applications", body = ApplicationList),
        (status = 400, description = "Invalid data (INVALID_DATA)", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong admin token (INVALID_TOKEN)", body = ApiErrorBody),
        (status = 404, description = "Not found (NOT_FOUND)", body = ApiErrorBody)
    )
)]
#[allow(dead_code)]
fn list_applications() {}

#[utoipa::path(
    post,
    path = "/v1/environments/{envId}/applications",
    tag = "applications",
    summary = "Create an application",
    params(("envId" = String, Path, format = "uuid", description = "The environment id")),
    request_body(content = ApplicationCreate, content_type = "application/json"),
    responses(
        (status = 201, description = "Created", body = Application),
        (status = 400, description = "Invalid data (INVALID_DATA)", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong admin token (INVALID_TOKEN)", body = ApiErrorBody),
        (status = 404, description = "Not found (NOT_FOUND)", body = ApiErrorBody),
        (status = 413, description = "Body too large (INVALID_DATA)", body = ApiErrorBody)
    )
)]
#[allow(dead_code)]
fn create_application() {}

#[utoipa::path(
    get,
    path = "/v1/environments/{envId}/applications/{appId}",
    tag = "applications",
    summary = "Get an application",
    params(("envId" = String, Path, format = "uuid", description = "The environment id"), ("appId" = String, Path, format = "uuid", description = "The application id")),
    responses(
        (status = 200, description = "The application", body = Application),
        (status = 400, description = "Invalid data (INVALID_DATA)", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong admin token (INVALID_TOKEN)", body = ApiErrorBody),
        (status = 404, description = "Not found (NOT_FOUND)", body = ApiErrorBody)
    )
)]
#[allow(dead_code)]
fn get_application() {}

#[utoipa::path(
    patch,
    path = "/v1/environments/{envId}/applications/{appId}",
    tag = "applications",
    summary = "Update an application",
    params(("envId" = String, Path, format = "uuid", description = "The environment id"), ("appId" = String, Path, format = "uuid", description = "The application id")),
    request_body(content = ApplicationUpdate, content_type = "application/json"),
    responses(
        (status = 200, description = "Updated", body = Application),
        (status = 400, description = "Invalid data (INVALID_DATA)", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong admin token (INVALID_TOKEN)", body = ApiErrorBody),
        (status = 404, description = "Not found (NOT_FOUND)", body = ApiErrorBody),
        (status = 413, description = "Body too large (INVALID_DATA)", body = ApiErrorBody)
    )
)]
#[allow(dead_code)]
fn update_application() {}

#[utoipa::path(
    delete,
    path = "/v1/environments/{envId}/applications/{appId}",
    tag = "applications",
    summary = "Delete an application",
    params(("envId" = String, Path, format = "uuid", description = "The environment id"), ("appId" = String, Path, format = "uuid", description = "The application id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Invalid data (INVALID_DATA)", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong admin token (INVALID_TOKEN)", body = ApiErrorBody),
        (status = 404, description = "Not found (NOT_FOUND)", body = ApiErrorBody)
    )
)]
#[allow(dead_code)]
fn delete_application() {}

#[utoipa::path(
    get,
    path = "/v1/environments/{envId}/applications/{appId}/secret",
    tag = "applications",
    summary = "Read the client secret",
    params(("envId" = String, Path, format = "uuid", description = "The environment id"), ("appId" = String, Path, format = "uuid", description = "The application id")),
    responses(
        (status = 200, description = "The client secret", body = ApplicationSecret),
        (status = 400, description = "Invalid data (INVALID_DATA)", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong admin token (INVALID_TOKEN)", body = ApiErrorBody),
        (status = 404, description = "Not found (NOT_FOUND)", body = ApiErrorBody)
    )
)]
#[allow(dead_code)]
fn get_application_secret() {}

#[utoipa::path(
    post,
    path = "/v1/environments/{envId}/applications/{appId}/secret",
    tag = "applications",
    summary = "Generate a new client secret",
    params(("envId" = String, Path, format = "uuid", description = "The environment id"), ("appId" = String, Path, format = "uuid", description = "The application id")),
    responses(
        (status = 200, description = "The new client secret", body = ApplicationSecret),
        (status = 400, description = "Invalid data (INVALID_DATA)", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong admin token (INVALID_TOKEN)", body = ApiErrorBody),
        (status = 404, description = "Not found (NOT_FOUND)", body = ApiErrorBody)
    )
)]
#[allow(dead_code)]
fn rotate_application_secret() {}

#[utoipa::path(
    get,
    path = "/v1/environments/{envId}/users",
    tag = "users",
    summary = "List users",
    params(("envId" = String, Path, format = "uuid", description = "The environment id"), UserListParams),
    responses(
        (status = 200, description = "A page of users", body = UserList),
        (status = 400, description = "Invalid data (INVALID_DATA)", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong admin token (INVALID_TOKEN)", body = ApiErrorBody),
        (status = 404, description = "Not found (NOT_FOUND)", body = ApiErrorBody)
    )
)]
#[allow(dead_code)]
fn list_users() {}

#[utoipa::path(
    post,
    path = "/v1/environments/{envId}/users",
    tag = "users",
    summary = "Create a user",
    params(("envId" = String, Path, format = "uuid", description = "The environment id")),
    request_body(content = UserCreate, content_type = "application/json"),
    responses(
        (status = 201, description = "Created", body = User),
        (status = 400, description = "Invalid data (INVALID_DATA)", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong admin token (INVALID_TOKEN)", body = ApiErrorBody),
        (status = 404, description = "Not found (NOT_FOUND)", body = ApiErrorBody),
        (status = 409, description = "Conflict (UNIQUENESS_VIOLATION or REQUEST_FAILED)", body = ApiErrorBody),
        (status = 413, description = "Body too large (INVALID_DATA)", body = ApiErrorBody)
    )
)]
#[allow(dead_code)]
fn create_user() {}

#[utoipa::path(
    get,
    path = "/v1/environments/{envId}/users/{userId}",
    tag = "users",
    summary = "Get a user",
    params(("envId" = String, Path, format = "uuid", description = "The environment id"), ("userId" = String, Path, format = "uuid", description = "The user id")),
    responses(
        (status = 200, description = "The user", body = User),
        (status = 400, description = "Invalid data (INVALID_DATA)", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong admin token (INVALID_TOKEN)", body = ApiErrorBody),
        (status = 404, description = "Not found (NOT_FOUND)", body = ApiErrorBody)
    )
)]
#[allow(dead_code)]
fn get_user() {}

#[utoipa::path(
    patch,
    path = "/v1/environments/{envId}/users/{userId}",
    tag = "users",
    summary = "Update a user",
    params(("envId" = String, Path, format = "uuid", description = "The environment id"), ("userId" = String, Path, format = "uuid", description = "The user id")),
    request_body(content = UserUpdate, content_type = "application/json"),
    responses(
        (status = 200, description = "Updated", body = User),
        (status = 400, description = "Invalid data (INVALID_DATA)", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong admin token (INVALID_TOKEN)", body = ApiErrorBody),
        (status = 404, description = "Not found (NOT_FOUND)", body = ApiErrorBody),
        (status = 409, description = "Conflict (UNIQUENESS_VIOLATION or REQUEST_FAILED)", body = ApiErrorBody),
        (status = 413, description = "Body too large (INVALID_DATA)", body = ApiErrorBody)
    )
)]
#[allow(dead_code)]
fn update_user() {}

#[utoipa::path(
    delete,
    path = "/v1/environments/{envId}/users/{userId}",
    tag = "users",
    summary = "Delete a user",
    params(("envId" = String, Path, format = "uuid", description = "The environment id"), ("userId" = String, Path, format = "uuid", description = "The user id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Invalid data (INVALID_DATA)", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong admin token (INVALID_TOKEN)", body = ApiErrorBody),
        (status = 404, description = "Not found (NOT_FOUND)", body = ApiErrorBody)
    )
)]
#[allow(dead_code)]
fn delete_user() {}

#[utoipa::path(
    get,
    path = "/v1/environments/{envId}/signingKeys",
    tag = "signingKeys",
    summary = "List signing keys",
    params(("envId" = String, Path, format = "uuid", description = "The environment id")),
    responses(
        (status = 200, description = "The environment's keys", body = SigningKeyList),
        (status = 400, description = "Invalid data (INVALID_DATA)", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong admin token (INVALID_TOKEN)", body = ApiErrorBody),
        (status = 404, description = "Not found (NOT_FOUND)", body = ApiErrorBody)
    )
)]
#[allow(dead_code)]
fn list_signing_keys() {}

#[utoipa::path(
    post,
    path = "/v1/environments/{envId}/signingKeys",
    tag = "signingKeys",
    summary = "Rotate: a new current key for one algorithm",
    params(("envId" = String, Path, format = "uuid", description = "The environment id")),
    request_body(content = SigningKeyCreate, content_type = "application/json"),
    responses(
        (status = 201, description = "The new current key", body = SigningKey),
        (status = 400, description = "Invalid data (INVALID_DATA)", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong admin token (INVALID_TOKEN)", body = ApiErrorBody),
        (status = 404, description = "Not found (NOT_FOUND)", body = ApiErrorBody),
        (status = 413, description = "Body too large (INVALID_DATA)", body = ApiErrorBody)
    )
)]
#[allow(dead_code)]
fn rotate_signing_key() {}

#[utoipa::path(
    get,
    path = "/v1/environments/{envId}/cibaRequests",
    tag = "cibaRequests",
    summary = "List CIBA requests",
    params(("envId" = String, Path, format = "uuid", description = "The environment id"), CibaRequestListParams),
    responses(
        (status = 200, description = "A page of CIBA requests", body = CibaRequestList),
        (status = 400, description = "Invalid data (INVALID_DATA)", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong admin token (INVALID_TOKEN)", body = ApiErrorBody),
        (status = 404, description = "Not found (NOT_FOUND)", body = ApiErrorBody)
    )
)]
#[allow(dead_code)]
fn list_ciba_requests() {}

#[utoipa::path(
    get,
    path = "/v1/environments/{envId}/cibaRequests/{authReqId}",
    tag = "cibaRequests",
    summary = "Get a CIBA request",
    params(("envId" = String, Path, format = "uuid", description = "The environment id"), ("authReqId" = String, Path, description = "The auth_req_id")),
    responses(
        (status = 200, description = "The request", body = CibaRequestView),
        (status = 400, description = "Invalid data (INVALID_DATA)", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong admin token (INVALID_TOKEN)", body = ApiErrorBody),
        (status = 404, description = "Not found (NOT_FOUND)", body = ApiErrorBody)
    )
)]
#[allow(dead_code)]
fn get_ciba_request() {}

#[utoipa::path(
    delete,
    path = "/v1/environments/{envId}/cibaRequests/{authReqId}",
    tag = "cibaRequests",
    summary = "Cancel a pending request",
    params(("envId" = String, Path, format = "uuid", description = "The environment id"), ("authReqId" = String, Path, description = "The auth_req_id")),
    responses(
        (status = 204, description = "Cancelled"),
        (status = 400, description = "Invalid data (INVALID_DATA)", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong admin token (INVALID_TOKEN)", body = ApiErrorBody),
        (status = 404, description = "Not found (NOT_FOUND)", body = ApiErrorBody),
        (status = 409, description = "Conflict (UNIQUENESS_VIOLATION or REQUEST_FAILED)", body = ApiErrorBody)
    )
)]
#[allow(dead_code)]
fn cancel_ciba_request() {}

#[utoipa::path(
    post,
    path = "/v1/environments/{envId}/cibaRequests/{authReqId}/approve",
    tag = "cibaRequests",
    summary = "Approve by simulation (SANDBOX only)",
    params(("envId" = String, Path, format = "uuid", description = "The environment id"), ("authReqId" = String, Path, description = "The auth_req_id")),
    responses(
        (status = 204, description = "Approved"),
        (status = 400, description = "Invalid data (INVALID_DATA)", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong admin token (INVALID_TOKEN)", body = ApiErrorBody),
        (status = 403, description = "Not allowed here (ACCESS_FAILED)", body = ApiErrorBody),
        (status = 404, description = "Not found (NOT_FOUND)", body = ApiErrorBody),
        (status = 409, description = "Conflict (UNIQUENESS_VIOLATION or REQUEST_FAILED)", body = ApiErrorBody)
    )
)]
#[allow(dead_code)]
fn approve_ciba_request() {}

#[utoipa::path(
    post,
    path = "/v1/environments/{envId}/cibaRequests/{authReqId}/deny",
    tag = "cibaRequests",
    summary = "Deny by simulation (SANDBOX only)",
    params(("envId" = String, Path, format = "uuid", description = "The environment id"), ("authReqId" = String, Path, description = "The auth_req_id")),
    responses(
        (status = 204, description = "Denied"),
        (status = 400, description = "Invalid data (INVALID_DATA)", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong admin token (INVALID_TOKEN)", body = ApiErrorBody),
        (status = 403, description = "Not allowed here (ACCESS_FAILED)", body = ApiErrorBody),
        (status = 404, description = "Not found (NOT_FOUND)", body = ApiErrorBody),
        (status = 409, description = "Conflict (UNIQUENESS_VIOLATION or REQUEST_FAILED)", body = ApiErrorBody)
    )
)]
#[allow(dead_code)]
fn deny_ciba_request() {}

#[utoipa::path(
    get,
    path = "/v1/environments/{envId}/users/{userId}/devices",
    tag = "devices",
    summary = "List a user's devices",
    params(("envId" = String, Path, format = "uuid", description = "The environment id"), ("userId" = String, Path, format = "uuid", description = "The user id"), PageParams),
    responses(
        (status = 200, description = "A page of devices", body = DeviceList),
        (status = 400, description = "Invalid data (INVALID_DATA)", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong admin token (INVALID_TOKEN)", body = ApiErrorBody),
        (status = 404, description = "Not found (NOT_FOUND)", body = ApiErrorBody)
    )
)]
#[allow(dead_code)]
fn list_devices() {}

#[utoipa::path(
    post,
    path = "/v1/environments/{envId}/users/{userId}/devices",
    tag = "devices",
    summary = "Register a device key for a user",
    params(("envId" = String, Path, format = "uuid", description = "The environment id"), ("userId" = String, Path, format = "uuid", description = "The user id")),
    request_body(content = DeviceCreate, content_type = "application/json"),
    responses(
        (status = 201, description = "Registered", body = Device),
        (status = 400, description = "Invalid data (INVALID_DATA)", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong admin token (INVALID_TOKEN)", body = ApiErrorBody),
        (status = 404, description = "Not found (NOT_FOUND)", body = ApiErrorBody),
        (status = 413, description = "Body too large (INVALID_DATA)", body = ApiErrorBody)
    )
)]
#[allow(dead_code)]
fn create_device() {}

#[utoipa::path(
    get,
    path = "/v1/environments/{envId}/users/{userId}/devices/{deviceId}",
    tag = "devices",
    summary = "Get a device",
    params(("envId" = String, Path, format = "uuid", description = "The environment id"), ("userId" = String, Path, format = "uuid", description = "The user id"), ("deviceId" = String, Path, format = "uuid", description = "The device id")),
    responses(
        (status = 200, description = "The device", body = Device),
        (status = 400, description = "Invalid data (INVALID_DATA)", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong admin token (INVALID_TOKEN)", body = ApiErrorBody),
        (status = 404, description = "Not found (NOT_FOUND)", body = ApiErrorBody)
    )
)]
#[allow(dead_code)]
fn get_device() {}

#[utoipa::path(
    patch,
    path = "/v1/environments/{envId}/users/{userId}/devices/{deviceId}",
    tag = "devices",
    summary = "Enable, disable or rename a device",
    params(("envId" = String, Path, format = "uuid", description = "The environment id"), ("userId" = String, Path, format = "uuid", description = "The user id"), ("deviceId" = String, Path, format = "uuid", description = "The device id")),
    request_body(content = DeviceUpdate, content_type = "application/json"),
    responses(
        (status = 200, description = "Updated", body = Device),
        (status = 400, description = "Invalid data (INVALID_DATA)", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong admin token (INVALID_TOKEN)", body = ApiErrorBody),
        (status = 404, description = "Not found (NOT_FOUND)", body = ApiErrorBody),
        (status = 413, description = "Body too large (INVALID_DATA)", body = ApiErrorBody)
    )
)]
#[allow(dead_code)]
fn update_device() {}

#[utoipa::path(
    delete,
    path = "/v1/environments/{envId}/users/{userId}/devices/{deviceId}",
    tag = "devices",
    summary = "Delete a device",
    params(("envId" = String, Path, format = "uuid", description = "The environment id"), ("userId" = String, Path, format = "uuid", description = "The user id"), ("deviceId" = String, Path, format = "uuid", description = "The device id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Invalid data (INVALID_DATA)", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong admin token (INVALID_TOKEN)", body = ApiErrorBody),
        (status = 404, description = "Not found (NOT_FOUND)", body = ApiErrorBody)
    )
)]
#[allow(dead_code)]
fn delete_device() {}

#[utoipa::path(
    post,
    path = "/v1/environments/{envId}/users/{userId}/deviceEnrollments",
    tag = "devices",
    summary = "Create a one-time enrolment code (10 minutes) for the user (the body is empty or {})",
    params(("envId" = String, Path, format = "uuid", description = "The environment id"), ("userId" = String, Path, format = "uuid", description = "The user id")),
    responses(
        (status = 201, description = "The code, shown once", body = DeviceEnrollment),
        (status = 400, description = "Invalid data (INVALID_DATA)", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong admin token (INVALID_TOKEN)", body = ApiErrorBody),
        (status = 404, description = "Not found (NOT_FOUND)", body = ApiErrorBody),
        (status = 413, description = "Body too large (INVALID_DATA)", body = ApiErrorBody)
    )
)]
#[allow(dead_code)]
fn create_user_device_enrollment() {}

#[utoipa::path(
    post,
    path = "/v1/environments/{envId}/deviceEnrollments",
    tag = "devices",
    summary = "Create a one-time enrolment code (10 minutes) for a user",
    params(("envId" = String, Path, format = "uuid", description = "The environment id")),
    request_body(content = DeviceEnrollmentCreate, content_type = "application/json"),
    responses(
        (status = 201, description = "The code, shown once", body = DeviceEnrollment),
        (status = 400, description = "Invalid data (INVALID_DATA)", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong admin token (INVALID_TOKEN)", body = ApiErrorBody),
        (status = 404, description = "Not found (NOT_FOUND)", body = ApiErrorBody),
        (status = 413, description = "Body too large (INVALID_DATA)", body = ApiErrorBody)
    )
)]
#[allow(dead_code)]
fn create_device_enrollment() {}

#[utoipa::path(
    get,
    path = "/v1/environments/{envId}/activities",
    tag = "activities",
    summary = "List the audit log, oldest first",
    params(("envId" = String, Path, format = "uuid", description = "The environment id"), ActivityListParams),
    responses(
        (status = 200, description = "A page of audit entries", body = ActivityList),
        (status = 400, description = "Invalid data (INVALID_DATA)", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong admin token (INVALID_TOKEN)", body = ApiErrorBody),
        (status = 404, description = "Not found (NOT_FOUND)", body = ApiErrorBody)
    )
)]
#[allow(dead_code)]
fn list_activities() {}
