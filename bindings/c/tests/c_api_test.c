/* The C ABI from a C11 program: every function, and the errors a C caller meets.
 * usage: xproc_c_test PATH/TO/xproc   (the command, to run a Manager server) */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "xproc.h"

static int failures = 0;

#define CHECK(condition)                                                                   \
  do {                                                                                     \
    if (!(condition)) {                                                                    \
      fprintf(stderr, "%s:%d: CHECK(%s) failed; last error: %s\n", __FILE__, __LINE__,     \
              #condition, xproc_last_error_message());                                     \
      ++failures;                                                                          \
    }                                                                                      \
  } while (0)

#define CHECK_STATUS(call, expected) CHECK((call) == (expected))

static void test_errors_have_names_and_messages(void) {
  CHECK(strncmp(xproc_strerror(XPROC_EMPTY), "XPROC_EMPTY", 11) == 0);
  CHECK(strncmp(xproc_strerror(XPROC_OK), "XPROC_OK", 8) == 0);
  CHECK(strcmp(xproc_strerror(9999), "unknown xproc status code") == 0);
  CHECK(strchr(xproc_version(), '.') != NULL); /* "MAJOR.MINOR.PATCH" */
  xproc_queue* queue = NULL;
  CHECK_STATUS(xproc_queue_create("a/b", 0, 0, &queue), XPROC_VALUE_ERROR);
  CHECK(strstr(xproc_last_error_message(), "a/b") != NULL);
  CHECK(queue == NULL); /* nothing written on failure */
  CHECK_STATUS(xproc_queue_create("..", 0, 0, &queue), XPROC_VALUE_ERROR);
  CHECK_STATUS(xproc_queue_create(NULL, 0, 0, NULL), XPROC_INVALID_ARGUMENT);
  CHECK_STATUS(xproc_queue_put(NULL, "x", 1, 0), XPROC_INVALID_ARGUMENT);
}

static void test_named_queue(void) {
  char name[64];
  snprintf(name, sizeof name, "c-api-test-%d", (int)getpid());
  xproc_queue* producer = NULL;
  xproc_queue* consumer = NULL;
  CHECK_STATUS(xproc_queue_create_typed(name, 2, 65536, 0x1234, &producer), XPROC_OK);
  CHECK_STATUS(xproc_queue_create(name, 0, 0, &consumer), XPROC_VALUE_ERROR); /* taken */
  CHECK_STATUS(xproc_queue_open(name, &consumer), XPROC_OK);
  uint64_t schema_id = 0;
  CHECK_STATUS(xproc_queue_schema_id(consumer, &schema_id), XPROC_OK);
  CHECK(schema_id == 0x1234);

  CHECK_STATUS(xproc_queue_put(producer, "hello", 5, -1), XPROC_OK);
  CHECK_STATUS(xproc_queue_put(producer, "", 0, -1), XPROC_OK);
  CHECK_STATUS(xproc_queue_put(producer, "x", 1, 0.01), XPROC_FULL); /* maxsize 2 */
  static char big[65536];
  CHECK_STATUS(xproc_queue_put(producer, big, sizeof big, 0), XPROC_MESSAGE_TOO_LARGE);
  size_t depth = 0;
  CHECK_STATUS(xproc_queue_qsize(consumer, &depth), XPROC_OK);
  CHECK(depth == 2);

  void* data = NULL;
  size_t size = 0;
  CHECK_STATUS(xproc_queue_get(consumer, &data, &size, -1), XPROC_OK);
  CHECK(size == 5 && memcmp(data, "hello", 5) == 0);
  xproc_free(data);
  CHECK_STATUS(xproc_queue_get(consumer, &data, &size, 0), XPROC_OK);
  CHECK(size == 0);
  xproc_free(data);
  CHECK_STATUS(xproc_queue_get(consumer, &data, &size, 0.05), XPROC_EMPTY);

  CHECK_STATUS(xproc_queue_remove(name), XPROC_OK);
  CHECK_STATUS(xproc_queue_remove(name), XPROC_VALUE_ERROR);
  xproc_queue* gone = NULL;
  CHECK_STATUS(xproc_queue_open(name, &gone), XPROC_VALUE_ERROR);
  CHECK_STATUS(xproc_queue_put(producer, "still", 5, 0), XPROC_OK); /* open handles keep working */
  xproc_queue_close(consumer);
  xproc_queue_close(producer);
}

/* A segment other users can reach is refused unless the opener shares it on purpose. */
static void test_shared_queue(void) {
  char name[64];
  snprintf(name, sizeof name, "c-api-shared-%d", (int)getpid());
  xproc_queue* creator = NULL;
  xproc_queue* opener = NULL;
  CHECK_STATUS(xproc_queue_create_shared(name, 0, 4096, 0, 0666, -1, &creator), XPROC_OK);
  CHECK_STATUS(xproc_queue_open(name, &opener), XPROC_PERMISSION_ERROR);
  CHECK(strstr(xproc_last_error_message(), "0666") != NULL);
  CHECK(opener == NULL);
  CHECK(strncmp(xproc_strerror(XPROC_PERMISSION_ERROR), "XPROC_PERMISSION_ERROR", 22) == 0);
  CHECK_STATUS(xproc_queue_open_shared(name, 0666, -1, -1, &opener), XPROC_OK);
  CHECK_STATUS(xproc_queue_put(creator, "shared", 6, 0), XPROC_OK);
  size_t depth = 0;
  CHECK_STATUS(xproc_queue_qsize(opener, &depth), XPROC_OK);
  CHECK(depth == 1);
  xproc_queue_close(opener);
  xproc_queue_close(creator);
  CHECK_STATUS(xproc_queue_remove(name), XPROC_OK);
}

static void test_anonymous_queue_across_fork(void) {
  xproc_queue* queue = NULL;
  CHECK_STATUS(xproc_queue_create(NULL, 0, 0, &queue), XPROC_OK);
  pid_t child = fork();
  if (child == 0) {
    _exit(xproc_queue_put(queue, "from the child", 14, -1) == XPROC_OK ? 0 : 1);
  }
  void* data = NULL;
  size_t size = 0;
  CHECK_STATUS(xproc_queue_get(queue, &data, &size, 10), XPROC_OK);
  CHECK(size == 14 && memcmp(data, "from the child", 14) == 0);
  xproc_free(data);
  int status = 0;
  waitpid(child, &status, 0);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  xproc_queue_close(queue);
}

static void test_pipe(void) {
  xproc_connection* a = NULL;
  xproc_connection* b = NULL;
  CHECK_STATUS(xproc_pipe(1, &a, &b), XPROC_OK);
  int ready = 1;
  CHECK_STATUS(xproc_connection_poll(b, 0, &ready), XPROC_OK);
  CHECK(ready == 0);
  CHECK_STATUS(xproc_connection_send_bytes(a, "ping", 4), XPROC_OK);
  CHECK_STATUS(xproc_connection_poll(b, 5, &ready), XPROC_OK);
  CHECK(ready == 1);
  void* data = NULL;
  size_t size = 0;
  CHECK_STATUS(xproc_connection_recv_bytes(b, &data, &size), XPROC_OK);
  CHECK(size == 4 && memcmp(data, "ping", 4) == 0);
  xproc_free(data);
  xproc_connection_close(a);
  CHECK_STATUS(xproc_connection_recv_bytes(b, &data, &size), XPROC_EOF);
  xproc_connection_close(b);

  CHECK_STATUS(xproc_pipe(0, &a, &b), XPROC_OK);
  CHECK(xproc_connection_send_bytes(a, "x", 1) != XPROC_OK); /* a only receives */
  xproc_connection_close(a);
  xproc_connection_close(b);
}

static int client_sends(const char* address, const char* key, const char* text) {
  xproc_connection* connection = NULL;
  int status = xproc_client_connect(address, key, strlen(key), &connection);
  if (status != XPROC_OK) return status;
  status = xproc_connection_send_bytes(connection, text, strlen(text));
  xproc_connection_close(connection);
  return status;
}

static void test_listener_and_client(void) {
  xproc_listener* listener = NULL;
  CHECK_STATUS(xproc_listener_create("", "secret", 6, &listener), XPROC_OK);
  const char* address = xproc_listener_address(listener);
  CHECK(strncmp(address, "unix:@", 6) == 0);
  char copy[256];
  snprintf(copy, sizeof copy, "%s", address);

  pid_t wrong = fork();
  if (wrong == 0) _exit(client_sends(copy, "wrong", "no") == XPROC_AUTHENTICATION_ERROR ? 0 : 1);
  xproc_connection* connection = NULL;
  CHECK_STATUS(xproc_listener_accept(listener, &connection), XPROC_AUTHENTICATION_ERROR);
  int status = 0;
  waitpid(wrong, &status, 0);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);

  pid_t right = fork();
  if (right == 0) _exit(client_sends(copy, "secret", "hello listener") == XPROC_OK ? 0 : 1);
  CHECK_STATUS(xproc_listener_accept(listener, &connection), XPROC_OK);
  void* data = NULL;
  size_t size = 0;
  CHECK_STATUS(xproc_connection_recv_bytes(connection, &data, &size), XPROC_OK);
  CHECK(size == 14 && memcmp(data, "hello listener", 14) == 0);
  xproc_free(data);
  waitpid(right, &status, 0);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  xproc_connection_close(connection);
  xproc_listener_close(listener);
}

static void test_values(void) {
  void* data = NULL;
  size_t size = 0;
  CHECK_STATUS(xproc_value_from_int(-42, &data, &size), XPROC_OK);
  int64_t number = 0;
  CHECK_STATUS(xproc_value_to_int(data, size, &number), XPROC_OK);
  CHECK(number == -42);
  char* text = NULL;
  CHECK_STATUS(xproc_value_to_text(data, size, &text), XPROC_TYPE_ERROR);
  xproc_free(data);
  CHECK_STATUS(xproc_value_from_text("it's", &data, &size), XPROC_OK);
  CHECK_STATUS(xproc_value_repr(data, size, &text), XPROC_OK);
  CHECK(strcmp(text, "\"it's\"") == 0);
  xproc_free(text);
  xproc_free(data);
  CHECK_STATUS(xproc_value_to_int("garbage!", 8, &number), XPROC_DECODE_ERROR);
}

static pid_t start_manager(const char* command, const char* socket_path, const char* key_path) {
  FILE* key = fopen(key_path, "w");
  fputs("c api key", key);
  fclose(key);
  chmod(key_path, 0600);
  pid_t server = fork();
  if (server == 0) {
    freopen("/dev/null", "w", stdout);
    execl(command, command, "serve", "--address", socket_path, "--authkey-file", key_path, (char*)NULL);
    _exit(127);
  }
  return server;
}

static void test_manager(const char* command) {
  char socket_path[128], key_path[128];
  snprintf(socket_path, sizeof socket_path, "/tmp/xproc-c-test-%d.sock", (int)getpid());
  snprintf(key_path, sizeof key_path, "/tmp/xproc-c-test-%d.key", (int)getpid());
  pid_t server = start_manager(command, socket_path, key_path);
  xproc_manager* manager = NULL;
  for (int attempt = 0; attempt < 200; ++attempt) { /* wait for the server to listen */
    if (xproc_manager_connect(socket_path, "c api key", 9, &manager) == XPROC_OK) break;
    nanosleep(&(struct timespec){0, 20000000}, NULL);
  }
  CHECK(manager != NULL);
  if (manager == NULL) {
    kill(server, SIGKILL);
    return;
  }
  xproc_manager* refused = NULL;
  CHECK_STATUS(xproc_manager_connect(socket_path, "wrong key", 9, &refused), XPROC_AUTHENTICATION_ERROR);

  xproc_dict* dict = NULL;
  CHECK_STATUS(xproc_manager_dict(manager, "c-dict", &dict), XPROC_OK);
  void *key = NULL, *value = NULL, *got = NULL;
  size_t key_size = 0, value_size = 0, got_size = 0, length = 0;
  CHECK_STATUS(xproc_value_from_text("answer", &key, &key_size), XPROC_OK);
  CHECK_STATUS(xproc_value_from_int(42, &value, &value_size), XPROC_OK);
  CHECK_STATUS(xproc_dict_get(dict, key, key_size, &got, &got_size), XPROC_KEY_ERROR);
  CHECK_STATUS(xproc_dict_set(dict, key, key_size, value, value_size), XPROC_OK);
  CHECK_STATUS(xproc_dict_len(dict, &length), XPROC_OK);
  CHECK(length == 1);
  CHECK_STATUS(xproc_dict_get(dict, key, key_size, &got, &got_size), XPROC_OK);
  int64_t number = 0;
  CHECK_STATUS(xproc_value_to_int(got, got_size, &number), XPROC_OK);
  CHECK(number == 42);
  xproc_free(got);
  CHECK_STATUS(xproc_dict_set(dict, "bad", 3, value, value_size), XPROC_DECODE_ERROR);
  CHECK_STATUS(xproc_dict_delete(dict, key, key_size), XPROC_OK);
  CHECK_STATUS(xproc_dict_delete(dict, key, key_size), XPROC_KEY_ERROR);

  xproc_list* list = NULL;
  CHECK_STATUS(xproc_manager_list(manager, "c-list", &list), XPROC_OK);
  CHECK_STATUS(xproc_list_append(list, value, value_size), XPROC_OK);
  CHECK_STATUS(xproc_list_append(list, key, key_size), XPROC_OK);
  CHECK_STATUS(xproc_list_len(list, &length), XPROC_OK);
  CHECK(length == 2);
  char* text = NULL;
  CHECK_STATUS(xproc_list_get(list, -1, &got, &got_size), XPROC_OK);
  CHECK_STATUS(xproc_value_to_text(got, got_size, &text), XPROC_OK);
  CHECK(strcmp(text, "answer") == 0);
  xproc_free(text);
  xproc_free(got);
  CHECK_STATUS(xproc_list_get(list, 5, &got, &got_size), XPROC_INDEX_ERROR);

  xproc_free(key);
  xproc_free(value);
  xproc_list_close(list);
  xproc_manager_close(manager);
  CHECK_STATUS(xproc_dict_len(dict, &length), XPROC_OK); /* outlives its manager handle */
  xproc_dict_close(dict);

  kill(server, SIGTERM);
  waitpid(server, NULL, 0);
  unlink(socket_path);
  unlink(key_path);
}

int main(int argc, char** argv) {
  test_errors_have_names_and_messages();
  test_named_queue();
  test_shared_queue();
  test_anonymous_queue_across_fork();
  test_pipe();
  test_listener_and_client();
  test_values();
  if (argc > 1) {
    test_manager(argv[1]);
  } else {
    fprintf(stderr, "no xproc command given: the Manager part is not run\n");
    ++failures;
  }
  if (failures != 0) {
    fprintf(stderr, "%d checks failed\n", failures);
    return 1;
  }
  printf("all C API checks passed\n");
  return 0;
}
