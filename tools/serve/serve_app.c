/*
 * serve_app.c - the requests that the parts of the server post to the
 * control loop of serve_main.c (see serve_app.h).
 */
#include "serve_app.h"

int serve_app_request_reload(serve_app *app, serve_reload_waiter *waiter)
{
    pthread_mutex_lock(&app->control_lock);
    int stopping = app->stop_requested;
    if (!stopping) {
        app->reload_requested = 1;
        if (waiter) {
            waiter->next = app->waiters;
            app->waiters = waiter;
        }
        pthread_cond_broadcast(&app->control_cond);
    }
    pthread_mutex_unlock(&app->control_lock);
    return stopping ? -1 : 0;
}
